# SIGKILL while several threads append to one MiniStore (CPython only). After each
# kill the journal must read as seqs 1..N with no gap and no repeat, every record
# must be the one its thread wrote (each thread's i in order, none twice), and
# every acknowledged record must be at the seq its append returned.
import importlib.util
import os
import random
import select
import signal
import subprocess
import sys
import time

import pytest

import reliability

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(os.path.dirname(HERE), "shared")
WRITER = os.path.join(HERE, "crash", "threaded_writer.py")
if SHARED not in sys.path:
    sys.path.insert(0, SHARED)
from ministore import MiniStore  # noqa: E402

pytestmark = pytest.mark.skipif(
    sys.implementation.name != "cpython" or not hasattr(signal, "SIGKILL"),
    reason="needs CPython and SIGKILL")

spec = importlib.util.spec_from_file_location("threaded_writer", WRITER)
writer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(writer)

THREADS = 4
KILLS = reliability.pick(ci=40, long=400)
KILLS_PER_JOURNAL = 10


def run_until_killed(path, seed, rng):
    env = dict(os.environ)
    env["PYTHONPATH"] = SHARED
    proc = subprocess.Popen([sys.executable, WRITER, path, str(THREADS), str(seed)],
                            stdout=subprocess.PIPE, env=env)
    acks = []
    buffer = b""
    deadline = None
    start = time.monotonic()
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], 0.005)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            buffer += chunk
            if acks or b"\n" in buffer:
                if deadline is None:
                    deadline = time.monotonic() + rng.uniform(0.01, 0.08)
        if deadline is not None and time.monotonic() >= deadline:
            break
        assert time.monotonic() - start < 30, "the writer never acknowledged anything"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    buffer += proc.stdout.read()
    proc.stdout.close()
    for line in buffer.split(b"\n"):
        if line:
            t, first, last, seq = (int(x) for x in line.split())
            acks.append((t, first, last, seq))
    return acks


def check(path, acked):
    """Read the journal; return (records, torn). Fails on any violation."""
    reader = MiniStore.stream(path)
    records = {}
    last_i = {}
    expect = 1
    for seq, rec in reader:
        assert seq == expect, "seq %d after %d" % (seq, expect - 1)
        expect += 1
        t, i = rec["t"], rec["i"]
        assert rec == writer.make_record(t, i), "record at seq %d is not what thread %d wrote" % (seq, t)
        assert i == last_i.get(t, 0) + 1, "thread %d: i %d after %d" % (t, i, last_i.get(t, 0))
        last_i[t] = i
        records[(t, i)] = seq
    for t, first, last, seq in acked:
        for i in range(first, last + 1):
            assert (t, i) in records, "acknowledged record %d of thread %d is lost" % (i, t)
        assert records[(t, last)] == seq, "thread %d record %d is not at the seq append returned" % (t, last)
    return len(records), reader.torn


def test_sigkill_while_threads_append_loses_nothing(tmp_path):
    rng = random.Random(4242)
    started = time.monotonic()
    acked_total = torn_seen = journals = 0
    acked = []
    path = None
    for kill in range(KILLS):
        if kill % KILLS_PER_JOURNAL == 0:
            journals += 1
            path = str(tmp_path / ("j%d.jsonl" % journals))
            acked = []
        new = run_until_killed(path, kill, rng)
        acked += new
        acked_total += sum(last - first + 1 for _, first, last, _ in new)
        count, torn = check(path, acked)
        torn_seen += torn is not None
        with MiniStore.open(path) as store:  # recovers the tail; same records
            assert store.seq == count
    reliability.record(
        suite="sigkill", brick="ministore (threads)", fs="posix",
        config="%d threads, sync=always, appends and batches" % THREADS,
        cut_points=KILLS, seeds=journals, checks=KILLS, acked_ops=acked_total, acked_lost=0,
        violations=0, seconds=round(time.monotonic() - started, 2),
        notes="%d torn tails seen" % torn_seen)
    assert acked_total > 0
