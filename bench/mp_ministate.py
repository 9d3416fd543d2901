# MicroPython benchmark of ministate on LittleFS (run by bench/bench_ministate.py):
#   micropython -X heapsize=64M bench/mp_ministate.py [heap_records,...] [--shared=DIR]
# On a RAM block device with a board's geometry (tests/mp/blockdev.py) it counts:
#   * the flash cost of create_snapshot with compaction, over 10 calls in the
#     steady state (each prunes the oldest of keep=2 snapshots, and the journal
#     segment that snapshot covered is removed), for a state of ~1 KB and one of
#     ~16 KB, split into its steps;
#   * the heap while StateManager.open recovers a journal (no snapshot): the
#     mutator's apply samples gc.mem_alloc() after gc.collect() at the first
#     record and every 1000 records.
# Prints one line "RESULT {json}" per measurement and "DONE" at the end;
# bench_ministate.py turns them into tables. Counts, not times (but for the
# recovery time, which is labelled as such): exact and the same on every run.
import gc
import json
import os
import time

import mp_setup  # noqa: E402

SHARED, ARGS = mp_setup.setup()

import vfs  # noqa: E402

import blockdev  # noqa: E402
from ministore import encode_json  # noqa: E402
from minilog import segment_files  # noqa: E402
from ministate import StateManager, Mutator  # noqa: E402

MOUNT = "/bench_flash"
DIR = MOUNT + "/state"
EVERY = 1000

# Heap sampling, preallocated so that sampling itself allocates nothing: SAMPLE[0]
# is the next free slot, -1 while not sampling.
SAMPLES = [0] * 64
SAMPLE = [-1]


class Reading(Mutator):
    """The benchmark's mutation: ~110 bytes of journal record, like the other benchmarks'
    records. It keeps the last reading per sensor, so the state does not grow with the
    number of mutations."""

    def __init__(self, t, sensor, value, ok, note):
        self.t = t
        self.sensor = sensor
        self.value = value
        self.ok = ok
        self.note = note

    def apply(self, state):
        state["n"] += 1
        state["sensors"][self.sensor] = [self.t, self.value, self.ok]
        at = SAMPLE[0]
        if at >= 0 and (state["n"] == 1 or state["n"] % EVERY == 0):
            gc.collect()
            SAMPLES[at] = gc.mem_alloc()
            SAMPLE[0] = at + 1


def reading(i, sensors=16):
    return Reading(t=1700000000 + i, sensor="temp-%02d" % (i % sensors), value=21.5 + (i % 100) / 10,
                   ok=True, note="abcdefghijklmnopqrstuvwxyz0123")


def initial(sensors=0):
    """The initial state; with `sensors`, one entry per sensor is there from the start,
    so that replaying readings replaces values and never adds keys."""
    state = {"n": 0, "sensors": {}}
    for i in range(sensors):
        state["sensors"]["temp-%02d" % i] = [0, 0.0, False]
    return state


def report(**fields):
    print("RESULT " + json.dumps(fields))


def fresh_fs(geometry, blocks):
    flash, fs = blockdev.make_fs("lfs2", geometry, blocks=blocks)
    vfs.mount(fs, MOUNT)
    return flash


def unmount():
    vfs.umount(MOUNT)


class Meter:
    """Erases and bytes programmed by each step of create_snapshot, by wrapping the
    instances' methods (the core is not changed)."""

    def __init__(self, flash):
        self.flash = flash
        self.steps = {}

    def wrap(self, obj, name, label):
        inner = getattr(obj, name)
        flash = self.flash
        steps = self.steps

        def counted(*args):
            e0, p0 = flash.erases, flash.programmed
            out = inner(*args)
            got = steps.get(label, (0, 0))
            steps[label] = (got[0] + flash.erases - e0, got[1] + flash.programmed - p0)
            return out
        setattr(obj, name, counted)


def snapshot_cost(geometry, target, count=10, between=50):
    """`count` create_snapshot calls in the steady state, each after `between` mutations,
    for a state of about `target` bytes of JSON. Only what create_snapshot does is counted."""
    flash = fresh_fs(geometry, 512)
    try:
        sm = StateManager.open(DIR, initial=initial(), mutators=[Reading], snapshot_every=None, keep=2)
        # Grow the state to the target size: one sensor key per mutation.
        sensors = 0
        while len(encode_json(sm.state)) < target:
            sm.apply(reading(sensors, sensors + 1))
            sensors += 1
        size = len(encode_json(sm.state))
        # Two snapshots first, so that each measured one prunes the oldest and its
        # compaction removes a segment: the steady state of keep=2.
        for _ in range(2):
            sm.create_snapshot()
            for i in range(between):
                sm.apply(reading(i, sensors))
        meter = Meter(flash)
        meter.wrap(sm._snaps, "create", "snapshot")   # write the snapshot, prune the oldest
        meter.wrap(sm._log, "roll", "roll")           # close the segment, start a new one
        meter.wrap(sm._log, "compact", "compact")     # remove the segments the snapshots cover
        erases = []
        programmed = []
        removed = 0
        for k in range(count):
            segments_before = len(segment_files(DIR))
            e0, p0 = flash.erases, flash.programmed
            sm.create_snapshot()
            erases.append(flash.erases - e0)
            programmed.append(flash.programmed - p0)
            removed += segments_before + 1 - len(segment_files(DIR))
            if k < count - 1:
                for i in range(between):
                    sm.apply(reading(i, sensors))
        snaps = sm._snaps.files()
        snap_bytes = os.stat(snaps[-1][1])[6]  # the newest
        sm.close()
        report(kind="snapshot", fs="lfs2", geometry=geometry, block_size=flash.block_size,
               prog_size=blockdev.GEOMETRY[geometry][1], target=target, state_bytes=size,
               snapshot_bytes=snap_bytes, sensors=sensors, snapshots=count, between=between,
               erases=erases, programmed=programmed, steps=meter.steps,
               segments_removed=removed, snapshots_kept=len(snaps))
    finally:
        unmount()


def heap(geometry, count):
    """gc.mem_alloc() after gc.collect(), sampled by the mutator's apply while
    StateManager.open replays a journal of `count` records (no snapshot)."""
    flash = fresh_fs(geometry, max(256, count * 300 // 4096 + 64))  # about twice the journal
    try:
        sm = StateManager.open(DIR, initial=initial(16), mutators=[Reading], snapshot_every=None, sync=1000)
        for i in range(count):
            sm.apply(reading(i))
        seq = sm.seq
        sm.close()
        del sm
        journal = 0
        for number, path in segment_files(DIR):
            journal += os.stat(path)[6]
        gc.collect()
        before = gc.mem_alloc()
        SAMPLE[0] = 0
        t0 = time.ticks_us()
        sm = StateManager.open(DIR, initial=initial(16), mutators=[Reading], snapshot_every=None, sync=1000)
        us = time.ticks_diff(time.ticks_us(), t0)
        taken = SAMPLE[0]
        SAMPLE[0] = -1
        assert sm.seq == seq == count, (sm.seq, seq, count)
        assert sm.state["n"] == count
        sm.close()
        samples = SAMPLES[:taken]
        report(kind="heap", fs="lfs2", geometry=geometry, records=count, every=EVERY, journal_bytes=journal,
               samples=samples, growth=max(samples) - samples[0], first=samples[0] - before,
               us_per_record=us / count)
    finally:
        unmount()


def main():
    heap_counts = [int(n) for n in (ARGS[0] if ARGS else "1000,10000").split(",")]
    for geometry in ("esp32", "rp2040"):
        for target in (1024, 16384):
            snapshot_cost(geometry, target)
            gc.collect()
    for n in heap_counts:
        heap("esp32", n)
        gc.collect()
    print("DONE")


main()
