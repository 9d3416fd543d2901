"""Flash lifetime tables for the board profiles (boards/*/README.md).

    python3 boards/lifetime.py

Erases per operation are the figures measured by the benchmarks (BENCHMARKS.md:
LittleFS on a RAM block device with the board's geometry). The lifetime assumes
LittleFS spreads erases evenly over the filesystem's blocks (its dynamic wear
levelling on a filesystem that is mostly free); a full filesystem wears faster.
The second table is a miniflash journal on its own flash region (FORMAT.md 6).
"""
CYCLES = 100000
SECONDS_PER_YEAR = 365.25 * 24 * 3600

BOARDS = {
    # name: (filesystem blocks of 4096 bytes on a common board, description)
    "esp32": (512, "ESP32 with 4 MiB flash: MicroPython's vfs partition is 2 MiB = 512 blocks"),
    "rp2040": (352, "Raspberry Pi Pico (2 MiB flash): the filesystem is 1.375 MiB = 352 blocks"),
}

# erases per operation, measured (BENCHMARKS.md, 2026-12-02: bench/bench_ministore.py and
# bench/bench_miniqueue.py, section "MicroPython", 2,000 records or messages): a synced
# write ends with a "block end" pad when the LittleFS block would not hold the next one
# (FORMAT.md 2.3), and the queue's ack replaces its get while that is in RAM (5.2)
MEASURED = {
    "esp32": [("ministore append, sync=\"always\"", 1.040), ("ministore append, sync=16", 0.096),
              ("miniqueue put+get+ack, sync=\"always\" (durability=\"puts\", the default)", 1.028),
              ("miniqueue put+get+ack, sync=16", 0.177),
              ("miniqueue put+get+ack, durability=\"all\" (3 syncs)", 3.109)],
    "rp2040": [("ministore append, sync=\"always\"", 1.071), ("ministore append, sync=16", 0.099),
               ("miniqueue put+get+ack, sync=\"always\" (durability=\"puts\", the default)", 1.071),
               ("miniqueue put+get+ack, sync=16", 0.181),
               ("miniqueue put+get+ack, durability=\"all\" (3 syncs)", 3.233)],
}


# A miniflash journal on its own raw flash region (FORMAT.md 6): erases per durable record
# (sync="always"), measured by bench/bench_miniflash.py (section 3, 2026-12-02) late in life:
# from seq 10**8 on. The record is the benchmarks' ~100 bytes of JSON, a 134-byte sealed line
# at seq 500; its seq is in the line, so past seq 100,000 (28 hours at 1 record/s) the line is
# 137-140 bytes and a 4096-byte sector holds 28 after its header, not 29 (0.0343 erases per
# record, measured at seqs up to 3,000, would give 23.6 years). The ring erases every sector
# of the region in turn, so the wear is even (max/mean 1.04 after 100k records on 1 MiB): no
# sector is more than one erase ahead of another, so the first to reach 100k cycles does so
# one trip round the ring (256 x 28 records, 2 hours at 1 record/s) before the last.
REGION_MEASURED = {"esp32": 0.03573, "rp2040": 0.03573}
REGION_SECTORS = [(256, "1 MiB"), (512, "2 MiB")]
REGION_GOAL_YEARS = 30  # issue 18, on 1 MiB
SECTOR = 4096
LINE = 134


def region_table(board):
    per_record = REGION_MEASURED[board]
    rows = ["| miniflash region, append sync=\"always\" | erases / record | records until 100k cycles | "
            "years at 1 record/s | years at 1 record/min |", "|---|---|---|---|---|"]
    for sectors, size in REGION_SECTORS:
        records = sectors * CYCLES / per_record
        rows.append("| %s (%d sectors) | %.4f | %.3g | %.1f | %.0f |" % (
            size, sectors, per_record, records, records / SECONDS_PER_YEAR, records * 60 / SECONDS_PER_YEAR))
    return "\n".join(rows)


def region_goal(board):
    """The goal of >= 30 years on 1 MiB, said plainly: missed, and why no format can meet it."""
    per_record = REGION_MEASURED[board]
    years = 256 * CYCLES / per_record / SECONDS_PER_YEAR
    bound = 256 * CYCLES * (SECTOR / float(LINE)) / SECONDS_PER_YEAR
    need = int(REGION_GOAL_YEARS * SECONDS_PER_YEAR * per_record / CYCLES) + 1
    return ("Goal >= %d years on 1 MiB at 1 record/s: missed (%.1f years). Unreachable with %d-byte records at "
            "%d erase cycles: a %d-byte sector holds at most %.1f of them even with no header and no byte unused, "
            "so 256 sectors last at most %.1f years. %d years needs %d sectors (%.2f MiB)." % (
                REGION_GOAL_YEARS, years, LINE, CYCLES, SECTOR, SECTOR / float(LINE), bound, REGION_GOAL_YEARS,
                need, need * SECTOR / 1048576.0))


def table(board):
    blocks, _ = BOARDS[board]
    budget = blocks * CYCLES
    rows = ["| operation | erases / op | ops until 100k cycles | years at 1 op/s | years at 1 op/min |",
            "|---|---|---|---|---|"]
    for name, erases in MEASURED[board]:
        ops = budget / erases
        rows.append("| %s | %.3f | %.3g | %.1f | %.0f |" % (
            name, erases, ops, ops / SECONDS_PER_YEAR, ops * 60 / SECONDS_PER_YEAR))
    return "\n".join(rows)


if __name__ == "__main__":
    for board in BOARDS:
        print("## %s: %s\n" % (board, BOARDS[board][1]))
        print(table(board))
        print()
        print(region_table(board))
        print()
        print(region_goal(board))
        print()
