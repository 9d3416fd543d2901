"""Benchmarks of ministore (shared/ministore.py), as ratios to baselines timed in the same run.

    python3 bench/bench_ministore.py [--quick] [--no-mp]

Machines are noisy, so contenders take turns in many short interleaved rounds
(in a rotating order); a rate is the median over the rounds, and a ratio is the
median of the per-round ratios, each taken between blocks run moments apart.
Read the ratios, not the absolute numbers. This is a benchmark, not a test: it
never fails on a slow figure.

1. append, sync="always"  vs  a raw os.write + os.fsync loop of lines of the same size
2. append, sync="always"  vs  sqlite3, WAL, synchronous=FULL, one INSERT per transaction
3. append_many(100 records)  vs  100 appends, both sync="always"
4. stream() of a 100,000-record journal  vs  `for line in f: json.loads(line)` over plain JSONL
5. MicroPython on LittleFS (bench/mp_ministore.py): flash erases and bytes programmed
   per record, and heap growth while streaming.

MINI_BENCH_SHARED=/path/to/a/copy/of/shared benchmarks a candidate change of the core
without touching the repo (the MicroPython part uses it too).

The fsync figures need a real disk: the temp dir is made under $MINI_BENCH_DIR,
else the system temp dir unless that is a RAM filesystem, else the home directory.
"""
import json
import os
import sqlite3
import subprocess
import sys
import time

# benchlib puts shared/ (or $MINI_BENCH_SHARED, a candidate copy) on sys.path.
from benchlib import (SHARED, TOP, Fresh, interleaved, run_main, micropython_path, print_table, record,
                      singles_vs_batch, sync_latency, load_note)
from ministore import MiniStore, encode_json, record_line  # noqa: E402


# ---------------------------------------------------------------- harness

def goal(ratio, target):
    return "goal >= %.1fx: %s" % (target, "MET" if ratio >= target else "MISSED")


# ---------------------------------------------------------------- 1 + 2: durable appends

RAW_FSYNC = "raw os.write + os.fsync"
RAW_FDATASYNC = "raw os.write + os.fdatasync"
STORE = 'ministore append, sync="always"'
SQLITE = "sqlite3 WAL, synchronous=FULL"


def bench_appends(root, rounds, block):
    """Each contender keeps one file open and appends `block` records per round."""
    fresh = Fresh(root)
    records = [record(i) for i in range(rounds * block)]
    # The exact lines ministore writes for these records, so the raw loop writes as many bytes.
    lines = [record_line(i + 1, encode_json(rec)) for i, rec in enumerate(records)]
    line_len = sum(map(len, lines)) / len(lines)
    handles = []

    def raw(sync_fn):
        fd = os.open(fresh("raw"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        handles.append(lambda: os.close(fd))
        at = [0]

        def run():
            chunk = lines[at[0]:at[0] + block]
            at[0] += block
            write = os.write
            t0 = time.perf_counter()
            for line in chunk:
                write(fd, line)
                sync_fn(fd)
            return block, time.perf_counter() - t0
        return run

    def store():
        s = MiniStore.open(fresh("store"), sync="always")
        handles.append(s.close)
        at = [0]

        def run():
            chunk = records[at[0]:at[0] + block]
            at[0] += block
            append = s.append
            t0 = time.perf_counter()
            for rec in chunk:
                append(rec)
            return block, time.perf_counter() - t0
        return run

    def sqlite():
        db = sqlite3.connect(fresh("sqlite") + ".db", isolation_level=None)  # autocommit
        handles.append(db.close)
        assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY, rec TEXT NOT NULL)")
        at = [0]

        def run():
            chunk = records[at[0]:at[0] + block]
            at[0] += block
            execute, dumps = db.execute, json.dumps
            t0 = time.perf_counter()
            for rec in chunk:  # one transaction per INSERT (autocommit), the same JSON text
                execute("INSERT INTO log (rec) VALUES (?)", (dumps(rec, separators=(",", ":")),))
            return block, time.perf_counter() - t0
        return run

    try:
        contenders = [(RAW_FSYNC, raw(os.fsync))]
        if hasattr(os, "fdatasync"):
            contenders.append((RAW_FDATASYNC, raw(os.fdatasync)))
        contenders += [(STORE, store()), (SQLITE, sqlite())]
        result = interleaved(rounds, contenders)
    finally:
        for close in handles:
            close()
    print_table("1+2. durable appends: %d interleaved rounds of %d appends each, %.0f bytes per line"
                % (rounds, block, line_len), result, "ops/s", "vs raw fsync", cpu=True)
    ratio = result.ratio(STORE)
    print("  ministore / raw os.write+os.fsync loop: %.2fx  (%s)" % (ratio, goal(ratio, 0.9)))
    if RAW_FDATASYNC in result.names:
        print("  ministore / raw os.write+os.fdatasync loop (the call ministore makes): %.2fx"
              % result.ratio(STORE, RAW_FDATASYNC))
    print("  ministore / sqlite3: %.2fx" % result.ratio(STORE, SQLITE))
    print("  (ops/s: median over the rounds; ratios: median of the per-round ratios;"
          " user CPU: user-mode CPU time per append, from getrusage)")
    cpu_cost(root, records, lines)
    print()
    return result


def cpu_cost(root, records, lines, repeat=5):
    """What an append costs in CPU alone: the same loops with no sync, hot caches, best of `repeat`."""
    fresh = Fresh(root)
    raw_best = store_best = None
    for _ in range(repeat):
        fd = os.open(fresh("cpu-raw"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            write = os.write
            t0 = time.perf_counter()
            for line in lines:
                write(fd, line)
            secs = time.perf_counter() - t0
        finally:
            os.close(fd)
        raw_best = secs if raw_best is None else min(raw_best, secs)
        s = MiniStore.open(fresh("cpu-store"), sync=len(records) + 1)
        try:
            append = s.append
            t0 = time.perf_counter()
            for rec in records:
                append(rec)
            secs = time.perf_counter() - t0
        finally:
            s.close()
        store_best = secs if store_best is None else min(store_best, secs)
    n = len(records)
    print("  CPU per append without any sync (hot loop, best of %d): ministore %.1f us, raw os.write %.1f us"
          % (repeat, store_best / n * 1e6, raw_best / n * 1e6))


# ---------------------------------------------------------------- 3: batches

def bench_batches(root, rounds, singles, batches, size=100):
    """`singles` records appended one by one vs `batches` append_many calls of `size` records, per round."""
    fresh = Fresh(root)
    batch = [record(i) for i in range(size)]
    one, many = "%d x append" % size, "append_many(%d records)" % size
    single_store = MiniStore.open(fresh("single"), sync="always")
    batch_store = MiniStore.open(fresh("batch"), sync="always")
    try:
        result = singles_vs_batch(rounds, batch, singles, batches, single_store.append,
                                  batch_store.append_many, (one, many))
    finally:
        single_store.close()
        batch_store.close()
    print_table('3. batches, sync="always": %d interleaved rounds of %d appends and %d append_many(%d)'
                % (rounds, singles // size * size, batches, size), result, "records/s", "vs appends", cpu=True)
    return result


# ---------------------------------------------------------------- 4: streaming

def bench_stream(root, rounds, count):
    journal = os.path.join(root, "stream.journal")
    plain = os.path.join(root, "stream.jsonl")
    with MiniStore.open(journal, sync=count + 1) as s:  # one sync, at close
        for i in range(count):
            s.append(record(i))
    with open(plain, "w", encoding="utf-8") as f:
        for i in range(count):
            f.write(json.dumps(record(i), separators=(",", ":"), ensure_ascii=False) + "\n")

    def stream():
        t0 = time.perf_counter()
        n = 0
        for _seq, _rec in MiniStore.stream(journal):
            n += 1
        secs = time.perf_counter() - t0
        assert n == count
        return n, secs

    def raw_text():
        loads = json.loads
        t0 = time.perf_counter()
        n = 0
        with open(plain, encoding="utf-8") as f:
            for line in f:
                loads(line)
                n += 1
        return n, time.perf_counter() - t0

    def raw_binary():
        loads = json.loads
        t0 = time.perf_counter()
        n = 0
        with open(plain, "rb") as f:
            for line in f:
                loads(line)
                n += 1
        return n, time.perf_counter() - t0

    text, binary, ms = "raw JSONL, text mode", "raw JSONL, binary mode", "ministore stream (CRC checked)"
    result = interleaved(rounds, [(text, raw_text), (binary, raw_binary), (ms, stream)])
    print_table("4. streaming %d records (%d-byte journal, %d-byte JSONL, page cache warm): %d interleaved rounds"
                % (count, os.path.getsize(journal), os.path.getsize(plain), rounds), result,
                "lines/s", "vs text")
    ratio = result.ratio(ms)
    print("  ministore / `for line in f: json.loads(line)`, text mode: %.2fx  (%s)" % (ratio, goal(ratio, 0.7)))
    print("  ministore / the same loop in binary mode: %.2fx" % result.ratio(ms, binary))
    print()
    return result


# ---------------------------------------------------------------- 5: MicroPython

def bench_micropython(records):
    exe = micropython_path()
    if exe is None:
        print("5. MicroPython: skipped (no micropython command on PATH)\n")
        return None
    cmd = [exe, "-X", "heapsize=64M", "bench/mp_ministore.py", str(records)]
    if SHARED != os.path.join(TOP, "shared"):
        cmd += ["1000,10000", SHARED]
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([SHARED, os.path.join(TOP, "tests", "mp"),
                                          env.get("MICROPYPATH", ".frozen:~/.micropython/lib:/usr/lib/micropython")])
    proc = subprocess.run(cmd, cwd=TOP, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    out = proc.stdout.decode("utf-8", "replace")
    results = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not out.rstrip().endswith("DONE"):
        print("5. MicroPython: FAILED (exit %d)\n%s\n" % (proc.returncode, out[-4000:]))
        return None
    version = subprocess.run([exe, "-c", "import sys; print(sys.version)"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT).stdout.decode().strip()
    print("5. MicroPython %s: `%s` (cwd: repo root)" % (version, " ".join(["micropython"] + cmd[1:])))
    wear = [r for r in results if r["kind"] == "wear"]
    if wear:
        print("  LittleFS on a RAM block device, %d records of ~%.0f bytes per line; counted after"
              " mkfs, mount and the journal's creation, up to and including close()" % (
                  wear[0]["records"], wear[0]["line_bytes"] / wear[0]["records"]))
        print("  %-8s %-9s %-8s %10s %12s %12s %14s" % (
            "board", "geometry", "sync", "erases", "erases/rec", "prog B/rec", "prog/line B"))
        for r in wear:
            n = r["records"]
            print("  %-8s %-9s %-8s %10d %12.3f %12.0f %13.1fx" % (
                r["geometry"], "%d/%d" % (r["block_size"], r["prog_size"]), r["sync"], r["erases"],
                r["erases"] / n, r["programmed"] / n, r["programmed"] / r["line_bytes"]))
        print("  (geometry: block size / program size; prog/line: bytes programmed over bytes of journal lines)")
    heap = [r for r in results if r["kind"] == "heap"]
    if heap:
        print("  heap while streaming (gc.collect() then gc.mem_alloc(), at the first record and every %d):"
              % heap[0]["every"])
        for r in heap:
            print("    %6d records: max growth over the first sample %d bytes (%d samples); reader's own"
                  " footprint %d bytes" % (r["records"], r["growth"], len(r["samples"]), r["reader"]))
        flat = all(r["growth"] == 0 for r in heap)
        print("    flat, independent of journal length: %s" % ("yes" if flat else "NO"))
    print()
    return results


# ---------------------------------------------------------------- main

ONE_THREAD = 'append, sync="always", 1 thread'
EIGHT_THREADS = 'append, sync="always", 8 threads on one store'


def bench_group_commit(root, rounds, block, threads=8):
    """Threads appending at once share each sync (group commit); every append is
    still durable when it returns. Records per second, 8 threads against 1."""
    import threading
    fresh = Fresh(root)
    handles = []
    counts = {}  # contender: [file syncs, appends]

    def contender(name, count):
        s = MiniStore.open(fresh("group%d" % count), sync="always")
        handles.append(s.close)
        counted = counts[name] = [0, 0]
        real_sync = s._file.sync

        def sync():  # an instance attribute shadows JournalFile.sync: count the fdatasync calls
            counted[0] += 1
            real_sync()
        s._file.sync = sync

        def run():
            ready = threading.Barrier(count + 1)  # the clock starts once every thread is up

            def worker(t):
                records = [record(t * block + i) for i in range(block // count)]
                ready.wait()
                for rec in records:
                    s.append(rec)
            workers = [threading.Thread(target=worker, args=(t,)) for t in range(count)]
            for w in workers:
                w.start()
            ready.wait()
            t0 = time.perf_counter()
            for w in workers:
                w.join()
            secs = time.perf_counter() - t0
            counted[1] += (block // count) * count
            return (block // count) * count, secs
        return run

    before = sync_latency(root)
    try:
        result = interleaved(rounds, [(ONE_THREAD, contender(ONE_THREAD, 1)),
                                      (EIGHT_THREADS, contender(EIGHT_THREADS, threads))])
    finally:
        for close in handles:
            close()
    after = sync_latency(root)
    print_table("group commit: %d interleaved rounds of %d durable appends" % (rounds, block), result,
                "ops/s", "vs 1 thread")
    print("  os.write + fdatasync of one line, before / after the rounds: median %.0f / %.0f us,"
          " 90th percentile %.0f / %.0f us; %s" % (before[0] * 1e6, after[0] * 1e6, before[1] * 1e6,
                                                    after[1] * 1e6, load_note()))
    ratio = result.ratio(EIGHT_THREADS)
    low, high = result.range(EIGHT_THREADS)
    print("  8 threads / 1 thread: %.2fx, rounds from %.2fx to %.2fx  (%s)" % (ratio, low, high, goal(ratio, 4.0)))
    for name in (ONE_THREAD, EIGHT_THREADS):
        syncs, appends = counts[name]
        print("  %s: %.3f syncs per append (%.1f appends share each sync)" % (name, syncs / appends, appends / syncs))
    print()
    return result


def main(argv=None):
    def cpython_part(root, quick):
        bench_appends(root, rounds=6 if quick else 40, block=50 if quick else 200)
        bench_group_commit(root, rounds=4 if quick else 15, block=160 if quick else 400)
        bench_batches(root, rounds=4 if quick else 20, singles=100 if quick else 200, batches=5 if quick else 20)
        bench_stream(root, rounds=3 if quick else 7, count=10000 if quick else 100000)

    return run_main("ministore", argv, cpython_part, lambda: bench_micropython(2000))


if __name__ == "__main__":
    sys.exit(main())
