# MicroPython benchmark of miniflash (a journal on a raw flash region) against
# ministore on LittleFS, both durable on return (sync="always"), on the RAM block
# device of tests/mp/blockdev.py with a board's geometry (run by bench/bench_miniflash.py):
#   micropython -X heapsize=64M bench/mp_miniflash.py [records] [rounds] [--shared=DIR]
# 1. wear: block erases and bytes programmed per appended record, each in the same
#    run: LittleFS (the baseline) and miniflash, ESP32 and RP2040 geometries;
# 2. speed: appends per second, the two contenders taking turns in short rounds;
#    a ratio per round (miniflash rate / LittleFS rate), the median reported.
# Prints "RESULT {json}" lines and "DONE". The RAM device programs and erases in
# microseconds; real NOR flash erases a sector in about 45 ms, which this does not
# show (bench_miniflash.py adds a flash-time model, labelled as one).
import gc
import json
import time

import mp_setup  # noqa: E402

SHARED, ARGS = mp_setup.setup()

import vfs  # noqa: E402

import blockdev  # noqa: E402
import miniflash  # noqa: E402
from ministore import MiniStore  # noqa: E402

MOUNT = "/bench_flash"
SECTORS = 256  # 1 MiB


def record(i):
    # ~100 bytes of JSON (a 134-byte line), the same shape as the other benchmarks' records
    return {"t": 1700000000 + i, "sensor": "temp-%02d" % (i % 16), "value": 21.5 + (i % 100) / 10,
            "ok": True, "note": "abcdefghijklmnopqrstuvwxyz0123"}


def report(**fields):
    print("RESULT " + json.dumps(fields))


class LittleFS:
    name = "ministore on LittleFS"

    def __init__(self, geometry):
        self.flash, fs = blockdev.make_fs("lfs2", geometry, blocks=SECTORS)
        vfs.mount(fs, MOUNT)
        self.store = MiniStore.open(MOUNT + "/j.jsonl", sync="always")

    def close(self):
        self.store.close()
        vfs.umount(MOUNT)


class Region:
    name = "miniflash region"

    def __init__(self, geometry):
        self.flash = blockdev.RAMFlash(4096, SECTORS)
        prog = blockdev.GEOMETRY[geometry][1]
        self.store = MiniStore.open(miniflash.Region(self.flash, prog=prog, retain=512 * 1024))

    def close(self):
        self.store.close()


def wear(kind, geometry, count):
    target = kind(geometry)
    try:
        store = target.store
        store.append(record(0))  # the journal (and its first sector) exists before counting
        flash = target.flash
        flash.erases = flash.programmed = flash.ops = 0
        for i in range(1, count + 1):
            store.append(record(i))
        report(kind="wear", store=kind.name, geometry=geometry, prog_size=blockdev.GEOMETRY[geometry][1],
               records=count, erases=flash.erases, programmed=flash.programmed, ops=flash.ops)
    finally:
        target.close()


def speed(geometry, rounds, block):
    """Appends per second, LittleFS and the region taking turns (order alternating each round)."""
    targets = [LittleFS(geometry), Region(geometry)]
    n = [0, 0]
    ratios = []
    rates = [[], []]
    try:
        for r in range(rounds):
            spent = [0.0, 0.0]
            for k in ((0, 1) if r % 2 == 0 else (1, 0)):
                store = targets[k].store
                gc.collect()
                t0 = time.ticks_us()
                for _ in range(block):
                    n[k] += 1
                    store.append(record(n[k]))
                spent[k] = time.ticks_diff(time.ticks_us(), t0) / 1e6
            rates[0].append(block / spent[0])
            rates[1].append(block / spent[1])
            ratios.append(spent[0] / spent[1])
    finally:
        for target in targets:
            target.close()
    report(kind="speed", geometry=geometry, rounds=rounds, block=block, littlefs_rate=median(rates[0]),
           region_rate=median(rates[1]), ratio=median(ratios))


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main(args):
    count = int(args[0]) if args else 3000
    rounds = int(args[1]) if len(args) > 1 else 21
    for geometry in ("esp32", "rp2040"):
        for kind in (LittleFS, Region):
            wear(kind, geometry, count)
            gc.collect()
    for geometry in ("esp32", "rp2040"):
        speed(geometry, rounds, 50)
        gc.collect()
    print("DONE")


main(ARGS)
