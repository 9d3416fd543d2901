# A RAM block device for the MicroPython unix port, with the extended block
# interface LittleFS uses (offset programs, explicit erase) and the simple one
# FAT uses. It counts programs and erases, and can cut the power at a chosen
# program/erase operation:
#   "raise": that operation raises OSError(EIO) and nothing of it lands;
#   "half":  the first half of the buffer lands, then it raises;
#   "drop":  that operation and every later one is silently ignored.
# The operations after the cut follow the same mode, so under "half" each of them
# lands half its buffer. Set after_cut = "lost" to model a real power failure
# instead: the cut operation follows the mode and every later one is silently lost.
# Reads and writes copy through one preallocated memoryview, so the device
# allocates nothing per call.
EIO = 5

GEOMETRY = {
    # name: (block size, program size) as the ports configure them
    "esp32": (4096, 32),
    "rp2040": (4096, 256),
}


class PowerCut(OSError):
    pass


class RAMFlash:
    def __init__(self, block_size, blocks, data=None):
        self.block_size = block_size
        self.blocks = blocks
        self.data = bytearray(block_size * blocks) if data is None else data
        self.mem = memoryview(self.data)
        self.ops = 0            # program + erase operations so far
        self.erases = 0
        self.programmed = 0     # bytes programmed
        self.cut_at = -1        # op index at which the power fails (-1: never)
        self.mode = "raise"
        self.after_cut = None   # "lost": operations after the cut are silently lost
        self.dead = False

    def _op(self):
        """Account for one program/erase; return True if it must not land."""
        index = self.ops
        self.ops += 1
        if self.dead:
            return True
        if index == self.cut_at:
            self.dead = True
            return True
        return False

    def _lost(self):
        """True for an operation after the cut (not the cut itself) when after_cut is "lost"."""
        return self.after_cut == "lost" and self.ops - 1 != self.cut_at

    def readblocks(self, block, buf, offset=0):
        start = block * self.block_size + offset
        buf[:] = self.mem[start:start + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        start = block * self.block_size + (offset or 0)
        if offset is None:
            # simple interface (FAT): the write includes the erase of whole blocks
            self.erases += len(buf) // self.block_size
        if self._op():
            if self.mode == "drop" or self._lost():
                return
            if self.mode == "half":
                half = len(buf) // 2
                self.mem[start:start + half] = buf[:half]
            raise PowerCut(EIO)
        self.mem[start:start + len(buf)] = buf
        self.programmed += len(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return self.block_size
        if op == 6:  # erase
            if self._op():
                if self.mode == "drop" or self._lost():
                    return 0
                raise PowerCut(EIO)
            self.erases += 1
            start = arg * self.block_size
            self.mem[start:start + self.block_size] = b"\xff" * self.block_size
            return 0
        return 0

    def copy(self):
        """A powered-on copy of the flash as it is now (to mount after a cut)."""
        return RAMFlash(self.block_size, self.blocks, bytearray(self.data))


def make_fs(kind, geometry, blocks=256, flash=None):
    """Format `flash` (or a new RAMFlash) with `kind` ("lfs2" or "fat"); return (flash, vfs object)."""
    import vfs
    block_size, prog_size = GEOMETRY[geometry]
    if flash is None:
        flash = RAMFlash(block_size, blocks)
    if kind == "lfs2":
        vfs.VfsLfs2.mkfs(flash, readsize=prog_size, progsize=prog_size, lookahead=32)
    else:
        vfs.VfsFat.mkfs(flash)
    return flash, mount_fs(kind, geometry, flash)


def mount_fs(kind, geometry, flash):
    import vfs
    prog_size = GEOMETRY[geometry][1]
    if kind == "lfs2":
        return vfs.VfsLfs2(flash, readsize=prog_size, progsize=prog_size, lookahead=32)
    return vfs.VfsFat(flash)
