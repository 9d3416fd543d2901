# A block device for the MicroPython unix port whose flash is an image file.
# Every program and erase is written through to the file at once, so the flash
# survives a SIGKILL of the interpreter the way real flash survives a power cut.
# Geometry follows the boards (flashgeometry.py): 4096-byte blocks; LittleFS
# program size 32 on ESP32 and 256 on RP2040.
# NOR semantics, as esp32.Partition and rp2.Flash: a program (writeblocks with an
# offset) can only clear bits, so what lands is the AND of the old bytes and the new
# ones (0xFF over a written byte leaves it as it is); only an erase (ioctl 6) sets
# them, a whole block to 0xFF. The simple interface (writeblocks without an offset,
# whole blocks) erases each block, then programs it.
import os

from flashgeometry import BLOCK_SIZE, GEOMETRY


class FlashFile:
    def __init__(self, path, block_size=BLOCK_SIZE, blocks=None, sync=True):
        """sync=True: fsync after every program and erase (survives a host crash too);
        sync=False: a plain write(), which survives a kill of the process."""
        self.path = path
        self.block_size = block_size
        size = os.stat(path)[6]
        self.blocks = blocks or size // block_size
        self.erases = 0
        self.programmed = 0
        self._f = open(path, "r+b")
        self._erased = b"\xff" * block_size
        self.sync = sync

    @staticmethod
    def create(path, blocks, block_size=BLOCK_SIZE):
        """A new image of erased (0xFF) blocks."""
        with open(path, "wb") as f:
            blank = b"\xff" * block_size
            for _ in range(blocks):
                f.write(blank)
        return FlashFile(path, block_size, blocks)

    def readblocks(self, block, buf, offset=0):
        self._f.seek(block * self.block_size + offset)
        self._f.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:  # simple interface: whole blocks, erase included
            self.erases += len(buf) // self.block_size
            offset = 0
        else:
            old = bytearray(len(buf))
            self.readblocks(block, old, offset)
            if old != self._erased[:len(buf)]:  # erased bytes take anything: the common case, no work
                buf = (int.from_bytes(old, "big") & int.from_bytes(buf, "big")).to_bytes(len(buf), "big")
        self._f.seek(block * self.block_size + offset)
        self._f.write(buf)
        if self.sync:
            self._f.flush()
        self.programmed += len(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return self.block_size
        if op == 6:
            self._f.seek(arg * self.block_size)
            self._f.write(self._erased)
            if self.sync:
                self._f.flush()
            self.erases += 1
            return 0
        return 0

    def close(self):
        self._f.close()


def filesystem(flash, board="esp32"):
    """The VfsLfs2 on flash, with the board's geometry (raises OSError if it does not mount)."""
    import vfs
    prog_size = GEOMETRY[board][1]
    return vfs.VfsLfs2(flash, readsize=prog_size, progsize=prog_size, lookahead=32)


def mkfs(flash, board="esp32"):
    import vfs
    prog_size = GEOMETRY[board][1]
    vfs.VfsLfs2.mkfs(flash, readsize=prog_size, progsize=prog_size, lookahead=32)


def is_blank(flash):
    """True when the first two blocks (where littlefs keeps its superblock) are erased."""
    buf = bytearray(flash.block_size)
    for block in (0, 1):
        flash.readblocks(block, buf)
        if buf != flash._erased:
            return False
    return True


def mount(image, board="esp32", mountpoint="/flash", format_if_blank=False):
    """Mount the LittleFS image at mountpoint; return the FlashFile."""
    import vfs
    block_size = GEOMETRY[board][0]
    flash = FlashFile(image, block_size)
    try:
        fs = filesystem(flash, board)
    except OSError:
        if not format_if_blank:
            raise
        mkfs(flash, board)
        fs = filesystem(flash, board)
    vfs.mount(fs, mountpoint)
    return flash
