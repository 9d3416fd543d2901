"""Flash lifetime tables for the board profiles (boards/*/README.md).

    python3 boards/lifetime.py

Erases per operation are the figures measured by the benchmarks (BENCHMARKS.md:
LittleFS on a RAM block device with the board's geometry). The lifetime assumes
LittleFS spreads erases evenly over the filesystem's blocks (its dynamic wear
levelling on a filesystem that is mostly free); a full filesystem wears faster.
"""
CYCLES = 100000
SECONDS_PER_YEAR = 365.25 * 24 * 3600

BOARDS = {
    # name: (filesystem blocks of 4096 bytes on a common board, description)
    "esp32": (512, "ESP32 with 4 MiB flash: MicroPython's vfs partition is 2 MiB = 512 blocks"),
    "rp2040": (352, "Raspberry Pi Pico (2 MiB flash): the filesystem is 1.375 MiB = 352 blocks"),
}

# erases per operation, measured (BENCHMARKS.md, 2026-11-24)
MEASURED = {
    "esp32": [("ministore append, sync=\"always\"", 1.048), ("ministore append, sync=16", 0.096),
              ("miniqueue put+get+ack, sync=\"always\"", 3.11), ("miniqueue put+get+ack, sync=16", 0.254)],
    "rp2040": [("ministore append, sync=\"always\"", 1.093), ("ministore append, sync=16", 0.099),
               ("miniqueue put+get+ack, sync=\"always\"", 3.24), ("miniqueue put+get+ack, sync=16", 0.260)],
}


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
