# The flash geometry of the boards: the one definition, read by the virtual board
# (flashfile.py, board.py, on MicroPython and CPython) and by `mini image extract`
# (minitools/image.py). tests/mp/blockdev.py keeps a literal copy, because it is
# imported from many scripts on MicroPython with their own sys.path;
# tests/test_flash_geometry.py checks that the copy equals this one.
# Plain Python that MicroPython runs: no typing, no f-strings.

BLOCK_SIZE = 4096  # bytes per erase block, on every board here

GEOMETRY = {
    # board: (block size, LittleFS program size) as the ports configure them
    "esp32": (BLOCK_SIZE, 32),
    "rp2040": (BLOCK_SIZE, 256),
}

BOARDS = ("esp32", "rp2040")  # in the order the help texts list them
