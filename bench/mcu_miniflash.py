"""Append speed of miniflash on the emulated microcontroller (tools/firmware.py), against
ministore on LittleFS, both durable on return (sync="always"). bench_miniflash.py runs it
(section 5); alone:

    python3 bench/mcu_miniflash.py [--quick]

ports/qemu BOARD=MICROBIT (Cortex-M0, float32, 31-bit small ints) under qemu-system-arm,
the 192 KB build, the code in ROMFS (run in place, as frozen code). Both contenders
append the benchmarks' ~100-byte JSON records (134-byte lines) to a 1 MiB RAM block device
of the same geometry (tests/mp/blockdev.py, outside the heap: tests/mcu/extram.py) with
the extended interface: LittleFS2 with the board's program size, or a miniflash region
(Region(prog=...), retain=512 KiB) on the raw device. ESP32 (4096 / 32) and RP2040
(4096 / 256) geometries.

Two boots, each timing with time.ticks_us() on the board, the two contenders taking turns
in short rounds (the order alternating each round), the figure the median of the per-round
ratios (region appends/s over LittleFS appends/s), after the region has gone round its ring once:
- instructions: qemu -icount shift=0, where the board's clock advances 1 ns per guest
  instruction executed, so ticks_us counts thousands of instructions: exact, the same on
  every run and machine (a Cortex-M0 takes 1-3 cycles an instruction);
- host clock: plain qemu, whose clock is the host's: a cross-check that depends on the
  machine's load (and on what qemu's translation costs per instruction).
A RAM device erases and programs in microseconds, so this is the CPU cost of an append
(the Python code, LittleFS's C code, the block device's Python methods); on a board each
LittleFS append also waits for about one 45 ms sector erase, which the region avoids
(bench_miniflash.py's flash-time model).
"""
import json
import os
import sys
import tempfile
import shutil

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))
sys.path.append(os.path.join(TOP, "tools"))
import firmware  # noqa: E402
import mcudriver  # noqa: E402

TARGET = "microbit-192k"

BOARD_SCRIPT = """
import sys, gc, json, time
sys.path[:0] = %(path)r
import extram, blockdev, vfs
extram.install()
import miniflash
from ministore import MiniStore

SECTORS = 256  # 1 MiB


def record(i):
    # the benchmarks' record (bench/mp_miniflash.py): a 134-byte line
    return {"t": 1700000000 + i, "sensor": "temp-%%02d" %% (i %% 16), "value": 21.5 + (i %% 100) / 10,
            "ok": True, "note": "abcdefghijklmnopqrstuvwxyz0123"}


def littlefs(geometry, point):
    flash, fs = blockdev.make_fs("lfs2", geometry, blocks=SECTORS)
    vfs.mount(fs, point)
    return MiniStore.open(point + "/j.jsonl", sync="always"), flash


def region(geometry):
    flash = blockdev.RAMFlash(4096, SECTORS)
    prog = blockdev.GEOMETRY[geometry][1]
    return MiniStore.open(miniflash.Region(flash, prog=prog, retain=512 * 1024)), flash


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def speed(geometry, rounds, block):
    stores = [littlefs(geometry, "/lfs_" + geometry), region(geometry)]
    n = [0, 0]
    spent = [[], []]
    ratios = []
    for k in (0, 1):  # the journal, its first sector and the first block device calls exist before timing
        stores[k][0].append(record(0))
    for i in range(%(prefill)d):  # the region late in life: its ring gone round, the writer walking all of it
        n[1] += 1
        stores[1][0].append(record(n[1]))
    for r in range(rounds):
        took = [0, 0]
        for k in ((0, 1) if r %% 2 == 0 else (1, 0)):
            store = stores[k][0]
            gc.collect()
            t0 = time.ticks_us()
            for _ in range(block):
                n[k] += 1
                store.append(record(n[k]))
            took[k] = time.ticks_diff(time.ticks_us(), t0)
        spent[0].append(took[0])
        spent[1].append(took[1])
        ratios.append(took[0] / took[1])
    erases = [stores[k][1].erases for k in (0, 1)]
    for k in (0, 1):
        stores[k][0].close()
    vfs.umount("/lfs_" + geometry)
    print("RESULT " + json.dumps({
        "geometry": geometry, "rounds": rounds, "block": block, "records": n,
        "littlefs_ms": median(spent[0]) / 1000.0 / block, "region_ms": median(spent[1]) / 1000.0 / block,
        "ratio": median(ratios), "erases": erases}))


for geometry in ("esp32", "rp2040"):
    speed(geometry, %(rounds)d, %(block)d)
    gc.collect()
print("DONE")
"""


# Records appended to the region before timing: one trip round its 256-sector ring (29
# records a sector), so that the writer retires and erases sectors and keeps ~135 in its
# ring (retain=512 KiB), as late in life. The LittleFS file starts empty (1 MiB of
# LittleFS cannot hold that much); a longer file makes its appends no cheaper.
PREFILL = 7600
ICOUNT = ["-icount", "shift=0"]  # 1 ns of the board's clock per guest instruction


def measure(quick=False, image=None, icount=True):
    """[{geometry, littlefs_ms, region_ms, ratio, ...}] from one boot of the emulated board
    (icount: its clock counts instructions); raises firmware.Unavailable where the build
    cannot be made."""
    firmware.build(TARGET)
    tmp = None
    if image is None:
        tmp = tempfile.mkdtemp(prefix="mini-mcu-flash-")
        image = mcudriver.romfs_image(tmp)
    flags = firmware.QEMU_FLAGS
    if icount:
        firmware.QEMU_FLAGS = flags + ICOUNT  # read by firmware.qemu_command(); restored below
    try:
        script = BOARD_SCRIPT % {"path": mcudriver.ROM_PATH, "rounds": 5 if quick else 15, "block": 10 if quick else 20,
                                 "prefill": PREFILL}
        code, out = firmware.run(TARGET, script, image, 3600)
    finally:
        firmware.QEMU_FLAGS = flags
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            mcudriver._image.pop("path", None)  # its cache of the image just removed
    if code != 0 or "DONE" not in out:
        raise RuntimeError("the board run failed (exit %d):\n%s" % (code, out[-4000:]))
    return [json.loads(line[len("RESULT "):]) for line in out.splitlines() if line.startswith("RESULT ")]


def report(results, icount=True):
    unit = "k instructions/append" if icount else "ms/append (host clock)"
    print("  geometry          LittleFS %-23s region %-23s region/LittleFS appends/s (median of %d rounds of %d)" % (
        unit, unit, results[0]["rounds"], results[0]["block"]))
    for r in results:
        scale = 1000.0 if icount else 1.0  # under icount a board ms is a million instructions
        figure = "%.0f" if icount else "%.2f"
        print("  %-16s  %32s   %30s   %6.2fx   goal >= 1 (no slower): %s" % (
            "%s (4096/%d)" % (r["geometry"], 32 if r["geometry"] == "esp32" else 256), figure % (r["littlefs_ms"] * scale),
            figure % (r["region_ms"] * scale), r["ratio"], "MET" if r["ratio"] >= 1.0 else "MISSED"))


def run_both(quick):
    """Both boots (instructions, then the host clock), reported; raises firmware.Unavailable."""
    for icount in (True, False):
        report(measure(quick, icount=icount), icount)


def main(argv):
    print("append speed on the emulated MCU (%s, qemu), sync=\"always\", 1 MiB RAM block devices; the region "
          "timed after %d records (its ring gone round)" % (TARGET, PREFILL))
    try:
        run_both("--quick" in argv)
    except firmware.Unavailable as exc:
        print("skipped: %s" % exc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
