"""Benchmarks of ministate (shared/ministate.py): recovery, snapshot wear, recovery heap.

    python3 bench/bench_ministate.py [--quick] [--no-mp]

Contenders take turns in interleaved rounds (rotating order); a time is the median
over the rounds, and a ratio the median of the per-round ratios. Read the ratios,
not the absolute numbers. A benchmark, not a test: it never fails on a slow figure.

1. StateManager.open after 100,000 applied mutations: full replay of the journal
   (snapshot_every=None, no snapshot)  vs  a snapshot at 99,000 plus a 1,000-record
   tail; and, as a floor, `for line in f: json.loads(line)` + the same apply over
   plain JSONL of the same records.
2. MicroPython on LittleFS (bench/mp_ministate.py): erases and bytes programmed by
   create_snapshot with compaction, for a state of ~1 KB and one of ~16 KB, and the
   heap while StateManager.open recovers a journal of 1,000 and of 10,000 records.

MINI_BENCH_SHARED=/path/to/a/copy/of/shared benchmarks a candidate core (the
MicroPython part uses it too). The scratch dir is on a real disk, as for
bench_ministore.py ($MINI_BENCH_DIR overrides it).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (dir_bytes, interleaved, run_main, run_micropython)  # noqa: E402

from ministate import StateManager, Mutator  # noqa: E402
from minilog import segment_files  # noqa: E402


class Reading(Mutator):
    """~110 bytes of journal record (the record shape of the other benchmarks), keeping
    the last reading per sensor: the state (16 sensors, ~0.6 KB) does not grow."""

    def __init__(self, t, sensor, value, ok, note):
        self.t = t
        self.sensor = sensor
        self.value = value
        self.ok = ok
        self.note = note

    def apply(self, state):
        state["n"] += 1
        state["sensors"][self.sensor] = [self.t, self.value, self.ok]


def reading(i):
    return Reading(t=1700000000 + i, sensor="temp-%02d" % (i % 16), value=21.5 + (i % 100) / 10,
                   ok=True, note="abcdefghijklmnopqrstuvwxyz0123")


INITIAL = {"n": 0, "sensors": {}}


# ---------------------------------------------------------------- 1: recovery time

def build(directory, count, snapshot_at):
    """Apply `count` mutations (sync=1000: to build fast; it does not change the files'
    format); with `snapshot_at`, one create_snapshot after that many."""
    sm = StateManager.open(directory, initial=INITIAL, mutators=[Reading], snapshot_every=None, sync=1000)
    try:
        for i in range(count):
            sm.apply(reading(i))
            if i + 1 == snapshot_at:
                sm.create_snapshot()
    finally:
        sm.close()


def bench_recovery(root, rounds, count, tail):
    full_dir = os.path.join(root, "full")
    snap_dir = os.path.join(root, "snap")
    plain = os.path.join(root, "plain.jsonl")
    t0 = time.perf_counter()
    build(full_dir, count, None)
    build(snap_dir, count, count - tail)
    with open(plain, "w", encoding="utf-8") as f:
        for i in range(count):
            f.write(json.dumps(reading(i).to_record(), separators=(",", ":"), ensure_ascii=False) + "\n")
    built = time.perf_counter() - t0

    states = {}

    def opener(name, directory):
        def run():
            t0 = time.perf_counter()
            sm = StateManager.open(directory, initial=INITIAL, mutators=[Reading], snapshot_every=None)
            secs = time.perf_counter() - t0
            states[name] = (sm.seq, sm.snapshot_seq, sm.state)
            sm.close()
            return 1, secs
        return run

    def raw():
        loads = json.loads
        t0 = time.perf_counter()
        state = json.loads(json.dumps(INITIAL))
        n = 0
        with open(plain, encoding="utf-8") as f:
            for line in f:
                Reading(**loads(line)["Reading"]).apply(state)
                n += 1
        secs = time.perf_counter() - t0
        states[RAW] = (n, 0, state)
        return 1, secs

    FULL = "full replay of %d records (no snapshot)" % count
    SNAP = "snapshot at %d + %d-record tail" % (count - tail, tail)
    RAW = "raw JSONL: json.loads + apply, %d lines" % count
    result = interleaved(rounds, [(FULL, opener(FULL, full_dir)), (SNAP, opener(SNAP, snap_dir)), (RAW, raw)])
    # Same state, same seq, whichever way it was recovered.
    assert states[FULL][0] == states[SNAP][0] == count, (states[FULL][:2], states[SNAP][:2])
    assert states[SNAP][1] == count - tail and states[FULL][1] == 0
    assert states[FULL][2] == states[SNAP][2] == states[RAW][2]

    print("1. StateManager.open after %d mutations (~%d-byte journal lines, a %d-byte state; page cache warm):"
          " %d interleaved rounds" % (count, dir_bytes(full_dir) // count,
                                      len(json.dumps(states[FULL][2], separators=(",", ":"))), rounds))
    print("  built with sync=1000 in %.1f s: full %s (%d segment), snapshot %s (%d segment, %s)" % (
        built, "{:,} bytes".format(dir_bytes(full_dir)), len(segment_files(full_dir)),
        "{:,} bytes".format(dir_bytes(snap_dir)), len(segment_files(snap_dir)),
        ", ".join(sorted(n for n in os.listdir(snap_dir) if not n.startswith(("journal-", "."))))))
    width = max(len(n) for n in result.names)
    print("  %-*s %11s %14s %14s" % (width, "", "s per open", "records/s", "vs full"))
    for name in result.names:
        secs = result.seconds(name)
        replayed = tail if name == SNAP else count
        print("  %-*s %11.4f %14s %13.2fx" % (width, name, secs, "{:,.0f}".format(replayed / secs),
                                               result.ratio(name, FULL)))
    print("  snapshot + tail recovers %.0fx faster than the full replay (per-round range %.0f-%.0fx)"
          % ((result.ratio(SNAP, FULL),) + result.range(SNAP, FULL)))
    print("  full replay / raw JSONL loop: %.2fx (the raw loop checks nothing and writes nothing)"
          % result.ratio(FULL, RAW))
    print("  (s per open: median over the rounds; ratios: median of the per-round ratios of the rates;"
          " records/s: records replayed, %d for the tail)" % tail)
    print()
    return result


# ---------------------------------------------------------------- 2: MicroPython

def bench_micropython(heap_counts):
    label = "2. MicroPython"
    got = run_micropython(label, "mp_ministate.py", [",".join(str(n) for n in heap_counts)])
    if not got:
        return got
    results, cmd, version = got
    print("2. MicroPython %s: `%s` (cwd: repo root)" % (version, cmd))
    snaps = [r for r in results if r["kind"] == "snapshot"]
    if snaps:
        r0 = snaps[0]
        print("  create_snapshot with compaction on LittleFS (RAM block device); %d calls in the steady state"
              " (keep=2:" % r0["snapshots"])
        print("  each prunes the oldest snapshot and removes one journal segment), %d mutations between them,"
              " not counted" % r0["between"])
        print("  %-7s %-9s %7s %7s %8s %8s %10s %9s   %s" % (
            "board", "geometry", "state B", "snap B", "erases", "max", "prog B", "prog/snap",
            "erases, prog B by step: snapshot+prune / roll / compact (per call)"))
        for r in snaps:
            n = r["snapshots"]
            steps = r["steps"]
            by_step = " / ".join("%.1f, %.0f" % (steps.get(k, (0, 0))[0] / n, steps.get(k, (0, 0))[1] / n)
                                 for k in ("snapshot", "roll", "compact"))
            print("  %-7s %-9s %7d %7d %8.1f %8d %10.0f %8.2fx   %s" % (
                r["geometry"], "%d/%d" % (r["block_size"], r["prog_size"]), r["state_bytes"],
                r["snapshot_bytes"], sum(r["erases"]) / n, max(r["erases"]), sum(r["programmed"]) / n,
                sum(r["programmed"]) / n / r["snapshot_bytes"], by_step))
            assert r["segments_removed"] == n and r["snapshots_kept"] == 2, r
        print("  (erases, prog B: mean per create_snapshot; max: the most erases of one call;"
              " prog/snap: bytes programmed over the snapshot file's size)")
    heap = [r for r in results if r["kind"] == "heap"]
    if heap:
        print("  heap while StateManager.open recovers a journal (no snapshot; ESP32 geometry): the mutator's"
              " apply samples")
        print("  gc.mem_alloc() after gc.collect() at the first record and every %d:" % heap[0]["every"])
        for r in heap:
            print("    %6d records (%s-byte journal): max growth over the first sample %d bytes (%d samples);"
                  " in use at the first record %d bytes; %.1f us/record" % (
                      r["records"], "{:,}".format(r["journal_bytes"]), r["growth"], len(r["samples"]),
                      r["first"], r["us_per_record"]))
        flat = all(r["growth"] == 0 for r in heap) and len({r["first"] for r in heap}) == 1
        print("    flat, independent of journal length: %s" % ("yes" if flat else "NO"))
    print()
    return results


# ---------------------------------------------------------------- main

def main(argv=None):
    def cpython_part(root, quick):
        bench_recovery(root, rounds=3 if quick else 7, count=10000 if quick else 100000,
                       tail=1000)

    return run_main("ministate", argv, cpython_part, lambda: bench_micropython([1000, 10000]))


if __name__ == "__main__":
    sys.exit(main())
