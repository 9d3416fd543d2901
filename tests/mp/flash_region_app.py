# A board whose flash is split (FORMAT.md 6, boards/*/README.md "A raw flash region"):
# LittleFS on the first blocks, a miniflash journal region on the rest, on the unix
# port over a flash image file (boards/virtual/flashfile.py). The host kills it with
# SIGKILL (a power cut) and reads the image with `mini cat --offset` (tests/test_flash_region.py).
#   micropython tests/mp/flash_region_app.py IMAGE FS_BLOCKS COUNT
# Prints "open SEQ", then "acked SEQ" after each append returns (durable), and "done".
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../shared")
sys.path.insert(0, HERE + "/../../boards/virtual")

import vfs  # noqa: E402
import flashfile  # noqa: E402
import miniflash  # noqa: E402
from ministore import MiniStore  # noqa: E402


def main(image, fs_blocks, count):
    flash = flashfile.FlashFile(image, 4096, sync=False)  # NOR-faithful; a write() survives SIGKILL
    part = miniflash.SubDevice(flash, 0, fs_blocks)
    try:
        fs = vfs.VfsLfs2(part, progsize=256, readsize=256, lookahead=32)
    except OSError:
        vfs.VfsLfs2.mkfs(part, progsize=256, readsize=256, lookahead=32)
        fs = vfs.VfsLfs2(part, progsize=256, readsize=256, lookahead=32)
    vfs.mount(fs, "/fs")
    region = miniflash.Region(flash, start=fs_blocks, retain=20000)
    store = MiniStore.open(region)
    print("open", store.seq)
    for _ in range(count):
        seq = store.append({"n": store.seq + 1, "t": 21.5, "note": "a reading of about a hundred bytes......"})
        print("acked", seq)
        if seq % 100 == 0:
            with open("/fs/last.txt", "w") as f:
                f.write(str(seq))
    store.close()
    print("done")


main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
