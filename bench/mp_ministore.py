# MicroPython benchmark of ministore on LittleFS (run by bench/bench_ministore.py):
#   micropython -X heapsize=64M bench/mp_ministore.py [records] [stream_records,...] [shared_dir]
# Counts, on a RAM block device with a board's geometry, the flash wear of
# appending (block erases and bytes programmed per record) for sync="always"
# and sync=16, and the heap growth while streaming a journal. Prints one line
# "RESULT {json}" per measurement; bench_ministore.py turns them into a table.
# Counts, not times: they are exact and the same on every run and machine.
import gc
import json
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
TOP = HERE + "/.."
sys.path.insert(0, TOP + "/tests/mp")
sys.path.insert(0, sys.argv[3] if len(sys.argv) > 3 else TOP + "/shared")  # or a candidate copy

import vfs  # noqa: E402

import blockdev  # noqa: E402
from ministore import MiniStore  # noqa: E402

MOUNT = "/bench_flash"


def record(i):
    # ~100 bytes of JSON, the same shape as the CPython benchmark's records
    return {"t": 1700000000 + i, "sensor": "temp-%02d" % (i % 16), "value": 21.5 + (i % 100) / 10,
            "ok": True, "note": "abcdefghijklmnopqrstuvwxyz0123"}


def report(**fields):
    print("RESULT " + json.dumps(fields))


def fresh_fs(geometry, blocks):
    flash, fs = blockdev.make_fs("lfs2", geometry, blocks=blocks)
    vfs.mount(fs, MOUNT)
    return flash


def unmount():
    vfs.umount(MOUNT)


def wear(geometry, sync, count):
    """Erases and bytes programmed per appended record, counted after the journal exists."""
    flash = fresh_fs(geometry, 512)
    try:
        store = MiniStore.open(MOUNT + "/j.jsonl", sync=sync)
        start = store.size  # the header
        flash.erases = flash.programmed = flash.ops = 0
        for i in range(count):
            store.append(record(i))
        store.close()  # a last sync for the records since the last one (none if count % sync == 0)
        report(kind="wear", fs="lfs2", geometry=geometry, block_size=flash.block_size,
               prog_size=blockdev.GEOMETRY[geometry][1], sync=sync, records=count,
               erases=flash.erases, programmed=flash.programmed, ops=flash.ops,
               line_bytes=store.size - start)
    finally:
        unmount()


def heap(geometry, count, every=1000):
    """gc.mem_alloc() after gc.collect() while streaming `count` records."""
    flash = fresh_fs(geometry, max(256, count * 280 // 4096 + 64))  # twice the journal's size
    try:
        path = MOUNT + "/j.jsonl"
        store = MiniStore.open(path, sync=1000)
        for i in range(count):
            store.append(record(i))
        store.close()
        del store
        # preallocated: a growing list would itself show up as heap growth
        samples = [0] * (count // every + 1)
        taken = 0
        n = 0
        gc.collect()
        before = gc.mem_alloc()
        reader = MiniStore.stream(path)
        for seq, rec in reader:
            n += 1
            if n == 1 or n % every == 0:
                seq = rec = None
                gc.collect()
                samples[taken] = gc.mem_alloc()
                taken += 1
        assert n == count, (n, count)
        assert reader.torn is None
        samples = samples[:taken]
        report(kind="heap", fs="lfs2", geometry=geometry, records=count, every=every,
               samples=samples, growth=max(samples) - samples[0], reader=samples[0] - before)
    finally:
        unmount()


def main(argv):
    count = int(argv[1]) if len(argv) > 1 else 2000
    stream_counts = [int(n) for n in (argv[2] if len(argv) > 2 else "1000,10000").split(",")]
    for geometry in ("esp32", "rp2040"):
        for sync in ("always", 16):
            wear(geometry, sync, count)
            gc.collect()
    for n in stream_counts:
        heap("esp32", n)
        gc.collect()
    print("DONE")


main(sys.argv)
