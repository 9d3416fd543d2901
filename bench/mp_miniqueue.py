# MicroPython benchmark of miniqueue on LittleFS (run by bench/bench_miniqueue.py):
#   micropython -X heapsize=64M bench/mp_miniqueue.py [messages] [--shared=DIR]
# On a RAM block device with a board's geometry (tests/mp/blockdev.py) it counts the
# flash wear of passing messages through a queue, each one put, get and ack
# (block erases and bytes programmed per message), for sync="always" and sync=16,
# over enough messages that compaction (a checkpoint in a new segment, then the
# older segments removed) happens several times; the share of compaction is
# counted apart. Prints one line "RESULT {json}" per measurement and "DONE";
# bench_miniqueue.py turns them into a table. Counts, not times: exact and the
# same on every run and machine.
import gc
import json

import mp_setup  # noqa: E402

SHARED, ARGS = mp_setup.setup()

import vfs  # noqa: E402

import blockdev  # noqa: E402
import ministore  # noqa: E402
from miniqueue import MiniQueue  # noqa: E402
from minilog import segment_files  # noqa: E402

MOUNT = "/bench_flash"
DIR = MOUNT + "/queue"


def message(i):
    # ~100 bytes of JSON, the same shape as the other benchmarks' records
    return {"t": 1700000000 + i, "sensor": "temp-%02d" % (i % 16), "value": 21.5 + (i % 100) / 10,
            "ok": True, "note": "abcdefghijklmnopqrstuvwxyz0123"}


def report(**fields):
    print("RESULT " + json.dumps(fields))


def wear(geometry, sync, count, durability="puts", reopen=True):
    """put + get + ack of `count` messages; counted after the queue exists, up to and
    including close(). reopen=False: without the journal's LittleFS reopens
    (MiniStore.refresh and every _REOPEN_EVERY syncs), to show what they save."""
    flash, fs = blockdev.make_fs("lfs2", geometry, blocks=512)
    vfs.mount(fs, MOUNT)
    every, refresh = ministore._REOPEN_EVERY, ministore.MiniStore.refresh
    if not reopen:
        ministore._REOPEN_EVERY = 0
        ministore.MiniStore.refresh = lambda self: None
    try:
        q = MiniQueue.open(DIR, sync=sync, durability=durability)  # defaults: max_bytes = compact_bytes = 64 KiB
        compacting = [0, 0, 0]  # calls, erases, bytes programmed inside compact()
        inner = q._compact  # what compact() and the automatic trigger both call

        def compact():
            e0, p0 = flash.erases, flash.programmed
            out = inner()
            compacting[0] += 1
            compacting[1] += flash.erases - e0
            compacting[2] += flash.programmed - p0
            return out
        q._compact = compact  # an instance attribute: _maybe_compact() calls it
        flash.erases = flash.programmed = flash.ops = 0
        for i in range(count):
            q.put(message(i))
            mid, msg = q.get()
            q.ack(mid)
        segments = len(segment_files(DIR))
        disk = q.disk_bytes()
        events = q.seq
        q.close()
        report(kind="wear", fs="lfs2", geometry=geometry, block_size=flash.block_size,
               prog_size=blockdev.GEOMETRY[geometry][1], sync=sync, durability=durability, messages=count,
               events=events,
               erases=flash.erases, programmed=flash.programmed, compactions=compacting[0],
               compact_erases=compacting[1], compact_programmed=compacting[2],
               compact_bytes=q.compact_bytes, segments=segments, disk_bytes=disk, reopen=reopen)
    finally:
        ministore._REOPEN_EVERY, ministore.MiniStore.refresh = every, refresh
        vfs.umount(MOUNT)


def main():
    count = int(ARGS[0]) if ARGS else 2000
    for geometry in ("esp32", "rp2040"):
        for sync, durability, reopen in (("always", "puts", True), ("always", "all", True), (16, "puts", True),
                                          ("always", "all", False)):
            wear(geometry, sync, count, durability, reopen)
            gc.collect()
    print("DONE")


main()
