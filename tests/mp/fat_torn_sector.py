# The control experiment for FAT's torn-sector hazard (MicroPython unix port).
#   micropython -X heapsize=64M tests/mp/fat_torn_sector.py
# No brick here: a plain file gets 100 short lines (most of a 4096-byte sector), each flushed (on MicroPython the
# flush is the sync). The power is cut at every program/erase op in "torn" mode (a
# sector write lands a prefix of its bytes, tests/mp/blockdev.py). On FAT the port
# writes a sector as erase + program, so a torn write wipes what the sector held:
# lines whose flush had returned are gone after the reboot. On LittleFS (copy on
# write) the same cuts lose none. This is why the power-cut sweeps count a failure
# after a torn FAT sector rewrite apart from the bricks' own losses, and why the
# board profiles recommend LittleFS.
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../shared")
sys.path.insert(0, HERE)

import powercut  # noqa: E402
from powercut import MOUNT  # noqa: E402

LINES = 100


def write_lines(flash):
    """Append and flush LINES lines; return how many flushes returned with the power on."""
    acked = 0
    try:
        with open(MOUNT + "/plain.txt", "a") as f:
            for i in range(LINES):
                f.write("line %03d of a plain file, flushed\n" % i)
                f.flush()
                if not flash.dead:
                    acked = i + 1
    except OSError:
        pass
    return acked


def flushed_lines_lost(kind, geometry, flash, acked):
    powercut.umount()
    try:
        powercut.reboot(kind, geometry, flash)
        with open(MOUNT + "/plain.txt", "rb") as f:
            text = f.read()
    except OSError:
        text = b""
    kept = 0
    for i in range(acked):
        if ("line %03d of a plain file, flushed\n" % i).encode() in text:
            kept += 1
    powercut.umount()
    return acked - kept


def main():
    lost_somewhere = {}
    for name in ("fat-esp32", "lfs2-esp32"):
        kind, geometry = name.split("-")
        flash = powercut.fresh(kind, geometry)
        start = flash.ops
        write_lines(flash)
        end = flash.ops
        powercut.umount()
        cuts = lost = 0
        for k in range(start, end):
            flash = powercut.fresh(kind, geometry)
            flash.mode = "torn"
            flash.after_cut = "lost"
            flash.cut_at = k
            acked = write_lines(flash)
            n = flushed_lines_lost(kind, geometry, flash, acked)
            cuts += 1
            if n:
                lost += 1
        lost_somewhere[name] = lost
        print("%s: %d torn cuts, %d of them lost flushed lines of a plain file" % (name, cuts, lost))
    ok = lost_somewhere["fat-esp32"] > 0 and lost_somewhere["lfs2-esp32"] == 0
    print("%d passed, %d failed" % ((1, 0) if ok else (0, 1)))
    return 0 if ok else 1


sys.exit(main())
