"""Benchmarks of miniflash (shared/miniflash.py): a journal on a raw flash region, durable
on return (sync="always"), against ministore on LittleFS measured in the same run.

    python3 bench/bench_miniflash.py [--quick] [--no-mp]

Counts, not times, except 4: flash wear is exact and the same on every machine.
1. (MicroPython, bench/mp_miniflash.py) erases and bytes programmed per 134-byte
   record, ESP32 (4096 / 32) and RP2040 (4096 / 256) geometries, LittleFS baseline
   in the same run. Goal: <= 0.05 erases per record.
2. (CPython) wear after 100,000 records on a 1 MiB region (256 sectors, retain=512 KiB):
   max / mean erase count over the region's sectors. Goal: <= 1.2.
3. (CPython) lifetime at one durable record per second on a 1 MiB region (100,000 erase
   cycles per sector, as boards/lifetime.py). Goal: >= 30 years. Measured late in life:
   from seq 10**8 on (past seq 100,000, after 28 hours at 1 record/s, the sealed line of
   the same record is 137-140 bytes, not 134, and a sector holds 28, not 29).
4. (MicroPython) appends per second on the unix port, LittleFS vs the region, on RAM
   block devices, interleaved rounds (ratio = median of per-round ratios). A RAM device
   erases in microseconds; a flash-time model (datasheet typical NOR timings, labelled
   as a model) shows what the erases cost on a board.
5. (the emulated MCU: ports/qemu MICROBIT, bench/mcu_miniflash.py) the same race on a
   Cortex-M0 build, both on RAM block devices of the board's geometry. Goal: the region's
   append is no slower than LittleFS's (ratio >= 1). Skipped where the build cannot be made.
"""
import os
import sys

from benchlib import TOP, run_main, run_micropython, record
sys.path.insert(0, os.path.join(TOP, "tests", "mp"))  # the flash-faithful RAM block device
import blockdev  # noqa: E402
import miniflash  # noqa: E402
from ministore import MiniStore, record_line, encode_json  # noqa: E402

CYCLES = 100000
SECONDS_PER_YEAR = 365.25 * 24 * 3600
SECTOR = 4096
T_ERASE_MS = 45.0      # 4 KiB sector erase, typical (W25Q16JV/W25Q32JV datasheets: 45 ms typ, 400 ms max)
T_PAGE_MS = 0.7        # 256-byte page program, typical (0.4-0.8 ms typ, 3 ms max)
LINE = len(record_line(500, encode_json(record(500))))  # a typical line of these records (132-137 bytes)


def years(erases_per_record, sectors):
    return sectors * CYCLES / erases_per_record / SECONDS_PER_YEAR


def wear_100k(geometry, count, base_seq=0):
    flash = blockdev.RAMFlash(SECTOR, 256)
    prog = blockdev.GEOMETRY[geometry][1]
    store = MiniStore.open(miniflash.Region(flash, prog=prog, retain=512 * 1024), base_seq=base_seq)
    for i in range(count):
        store.append(record(i))
    header = store.wear()
    store.close()
    top, mean, ratio = flash.wear()
    return top, mean, ratio, header, flash.erases / float(count)


def cpython_part(root, quick):
    count = 20000 if quick else 100000
    print("2. wear after %d records (%d-byte lines) on a 1 MiB region (256 sectors), retain=512 KiB" % (
        count, LINE))
    print("  geometry            erases/record   max erases   mean erases   max/mean   (from the headers)")
    for geometry in ("esp32", "rp2040"):
        top, mean, ratio, header, per = wear_100k(geometry, count)
        print("  %-18s  %13.4f   %10d   %11.2f   %8.3f   (%d / %.2f = %.3f)  goal <= 1.2: %s" % (
            "%s (4096/%d)" % (geometry, blockdev.GEOMETRY[geometry][1]), per, top, mean, ratio,
            header[0], header[1], header[2], "MET" if ratio <= 1.2 else "MISSED"))
    print()
    late = 10 ** 8
    count = 6000 if quick else 30000
    line = len(record_line(late + 500, encode_json(record(500))))
    print("3. lifetime at 1 durable record/s on a 1 MiB region (256 sectors x %d cycles), from the erases per "
          "record of %d records after seq %d (%d-byte lines)" % (CYCLES, count, late, line))
    for geometry in ("esp32", "rp2040"):
        e = wear_100k(geometry, count, late)[4]
        need = int(30 * SECONDS_PER_YEAR * e / CYCLES) + 1
        print("  %-8s %.5f erases/record: %.1f years  (goal >= 30: %s; 30 years needs %d sectors = %.2f MiB)" % (
            geometry, e, years(e, 256), "MET" if years(e, 256) >= 30 else "MISSED", need, need * SECTOR / 1048576.0))
    print("  bound with no sector header and no unused bytes: %.1f years with %d-byte lines, %.1f with %d-byte lines" % (
        years(LINE / float(SECTOR), 256), LINE, years(line / float(SECTOR), 256), line))
    print()


def micropython_part():
    got = run_micropython("1, 4. MicroPython", "mp_miniflash.py", [1000, 7] if "--quick" in sys.argv else [])
    if not got:
        return got
    results, command, version = got
    print("1. erases and bytes programmed per durable record (%d-byte lines), sync=\"always\"" % LINE)
    print("   %s (%s)" % (command, version))
    print("  geometry            store                    erases/record   bytes programmed/record   LittleFS/region")
    wear = {}
    for r in results:
        if r["kind"] == "wear":
            wear[(r["geometry"], r["store"])] = r
    for geometry in ("esp32", "rp2040"):
        base = wear[(geometry, "ministore on LittleFS")]
        region = wear[(geometry, "miniflash region")]
        for r in (base, region):
            e = r["erases"] / float(r["records"])
            note = ""
            if r is region:
                note = "%6.1fx fewer erases  goal <= 0.05: %s" % (
                    (base["erases"] / float(base["records"])) / e, "MET" if e <= 0.05 else "MISSED")
            print("  %-18s  %-23s  %13.4f   %23.0f   %s" % (
                "%s (4096/%d)" % (geometry, r["prog_size"]), r["store"], e, r["programmed"] / float(r["records"]),
                note))
    print()
    print("4. append speed on the unix port (RAM block device), sync=\"always\"")
    print("  geometry        LittleFS appends/s   region appends/s   region/LittleFS (median of rounds)")
    for r in results:
        if r["kind"] == "speed":
            print("  %-14s  %18.0f   %16.0f   %6.2fx" % (r["geometry"], r["littlefs_rate"], r["region_rate"],
                                                          r["ratio"]))
    print("  flash-time model per append (typical NOR: erase %.0f ms per sector, program %.1f ms per "
          "256-byte page; a model, not a measurement):" % (T_ERASE_MS, T_PAGE_MS))
    for geometry in ("esp32", "rp2040"):
        t = {}
        for store in ("ministore on LittleFS", "miniflash region"):
            r = wear[(geometry, store)]
            t[store] = (r["erases"] * T_ERASE_MS + r["programmed"] / 256.0 * T_PAGE_MS) / r["records"]
        print("  %-14s  LittleFS %.1f ms, region %.2f ms: %.0fx" % (
            geometry, t["ministore on LittleFS"], t["miniflash region"],
            t["ministore on LittleFS"] / t["miniflash region"]))
    print()
    import mcu_miniflash
    import firmware
    print("5. append speed on the emulated MCU (%s under qemu, 192 KB heap, code in ROMFS), sync=\"always\", "
          "1 MiB RAM block devices; the region timed after %d records (its ring gone round)" % (
              mcu_miniflash.TARGET, mcu_miniflash.PREFILL), flush=True)
    try:
        mcu_miniflash.run_both("--quick" in sys.argv)
    except firmware.Unavailable as exc:
        print("  skipped: %s" % exc)
    print()
    return True


if __name__ == "__main__":
    sys.exit(run_main("miniflash", sys.argv[1:], cpython_part, micropython_part))
