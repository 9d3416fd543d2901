# A flash-faithful RAM block device for the MicroPython unix port (NOR flash, as
# on ESP32 and RP2040 boards), with the extended block interface LittleFS uses
# (offset programs, explicit erase) and the simple one FAT uses.
#
# NOR semantics: a program can only clear bits (new = old AND data) and an erase
# sets a whole block to 0xFF. A program that needs a 0 bit to become 1 is counted
# in `dirty_programs` (a filesystem that does this corrupts real flash; LittleFS
# never should). The simple interface (FAT) is a sector write, which on flash
# partitions is an erase of each block followed by a program.
#
# It counts operations (`ops`: programs + erases), `erases`, bytes `programmed`,
# erases per block (`block_erases`), and the sync barriers the filesystem asks for
# (`syncs`, ioctl 3). It can cut the power at a chosen program/erase op, `cut_at`:
#   "raise":   that op raises OSError(EIO) and nothing of it lands;
#   "torn":    a prefix of it lands (`torn_fraction` of its bytes; for an erase, a
#              prefix of the block is erased), then it raises. A torn sector write
#              (simple interface) has erased the whole sector first, so it can
#              destroy bytes written long before: `torn_rewrite_lost` counts them;
#   "drop":    that op is silently ignored (the driver never notices);
#   "reorder": the ops since the last sync barrier complete out of order: a
#              pseudo-random subset of them (seeded by `reorder_seed`) is undone,
#              as if they were still in a write cache when the power went; the cut
#              op itself raises. At most `reorder_window` ops are held. The flash is
#              rolled back to the barrier and each op that landed is done again, in
#              order, as it was asked: a program ANDs in its own bytes only, an erase
#              sets its block to 0xFF (so a later program's 0xFF over the bytes of an
#              undone one does not bring them back).
# after_cut: None keeps applying the mode to every later op (a flaky part);
# "lost" models a real power failure: every op after the cut is silently lost.
# `dead` is True from the cut on. Outside "reorder" mode the device allocates
# nothing per call: reads and writes go through one memoryview.
EIO = 5

GEOMETRY = {
    # name: (block size, program size) as the ports configure them
    "esp32": (4096, 32),
    "rp2040": (4096, 256),
}

MODES = ("raise", "torn", "drop", "reorder")
_PIECE = 1024  # bytes a longer program is compared and copied in (_program)


class PowerCut(OSError):
    pass


# Where flash images live. None: a bytearray on the heap (the unix port). The MCU
# build (tests/mcu/extram.py) sets a function size -> a writable buffer of that size,
# filled with 0xFF, in RAM outside the MicroPython heap, as a real board's flash is.
new_image = None


def _new_image(size):
    if new_image is not None:
        return new_image(size)
    return bytearray(b"\xff" * size)


class RAMFlash:
    def __init__(self, block_size, blocks, data=None):
        self.block_size = block_size
        self.blocks = blocks
        self.data = _new_image(block_size * blocks) if data is None else data
        self.mem = memoryview(self.data)
        self.ops = 0             # program + erase operations so far
        self.erases = 0
        self.programmed = 0      # bytes programmed
        self.block_erases = [0] * blocks
        self.syncs = 0
        self.dirty_programs = 0  # programs that needed a 0 bit to become 1
        self.cut_at = -1         # op index at which the power fails (-1: never)
        self.mode = "raise"
        self.torn_fraction = 0.5
        self.after_cut = None    # "lost": operations after the cut are silently lost
        self.dead = False
        self.reorder_seed = 1
        self.reorder_window = 8
        self.reordered = 0       # ops undone by a "reorder" cut
        self.torn_rewrite_lost = 0  # bytes already on flash that a torn sector write (FAT) erased
        self._pending = []       # "reorder" mode: (start, bytes before, bytes asked: None for an erase,
        #                          whether a sector write erased first) of each op since the last sync
        self._erased = b"\xff" * block_size
        self._erased_view = memoryview(self._erased)

    # ------------------------------------------------------------ power

    def _cut_now(self):
        """Account for one program/erase op; return True if the power is off for it."""
        index = self.ops
        self.ops += 1
        if self.dead:
            return True
        if index == self.cut_at:
            self.dead = True
            if self.mode == "reorder":
                self._undo_some()
            return True
        return False

    def _lost(self):
        """True for an op after the cut (not the cut itself) when after_cut is "lost"."""
        return self.after_cut == "lost" and self.ops - 1 != self.cut_at

    def _remember(self, start, length, data=None, erase_first=False):
        if self.mode == "reorder" and self.cut_at >= 0:
            self._pending.append((start, bytes(self.mem[start:start + length]),
                                  None if data is None else bytes(data), erase_first))
            if len(self._pending) > self.reorder_window:
                self._pending.pop(0)  # completed long ago: out of the write cache

    def _undo_some(self):
        """Undo a seeded subset of the ops since the last sync, keeping the rest in order."""
        ops = self._pending
        self._pending = []
        if not ops:
            return
        rng = self.reorder_seed * 2654435761 + self.cut_at * 40503 + 12345
        keep = []
        for _ in ops:
            rng = (rng * 1103515245 + 12345) & 0x7FFFFFFF
            keep.append(rng & 0x10000 != 0)
        # Roll the cached ops back to the barrier, then do again the ones that landed,
        # each as it was asked: the bytes of a program's range after every op would bring
        # back an undone program's bytes under a later one's 0xFF.
        for start, before, _, _ in reversed(ops):
            self.mem[start:start + len(before)][:] = before
        for i in range(len(ops)):
            start, before, data, erase_first = ops[i]
            if not keep[i]:
                self.reordered += 1
            elif data is None:
                self._erase(start // self.block_size)
            else:
                if erase_first:
                    for block in range(start // self.block_size, (start + len(data)) // self.block_size):
                        self._erase(block)
                self._program(start, data)

    # ------------------------------------------------------------ flash operations

    def _program(self, start, buf):
        # AND through big ints: C speed, and an erased target (the usual case)
        # takes the plain copy.
        n = len(buf)
        if not n:
            return
        if n <= self.block_size:
            target = self.mem[start:start + n]
            if target == self._erased_view[:n]:
                # The usual case, an erased target: the program lands as it is. Compared
                # through views, with no copy and no big int: a flash driver allocates
                # nothing, and a MemoryError raised here, from inside LittleFS's C code,
                # has left the MCU build in a HardFault (a heap bisection trial "hung").
                target[:] = buf
                return
        if n > _PIECE:
            # A 4 KB FAT sector as three 4 KB ints was 12 KB of a board's heap at once
            # (MemoryError on the 128 KB board); 1 KB at a time, counted as one program.
            data = memoryview(buf)
            before = self.dirty_programs
            for at in range(0, n, _PIECE):
                self._program(start + at, data[at:at + _PIECE])
            self.dirty_programs = min(self.dirty_programs, before + 1)
            return
        target = self.mem[start:start + n]
        old = int.from_bytes(target, "big")
        new = int.from_bytes(buf, "big")
        landed = old & new
        if landed == new:
            target[:] = buf
        else:
            self.dirty_programs += 1
            target[:] = landed.to_bytes(n, "big")

    def _erase(self, block, length=None):
        start = block * self.block_size
        if length is None:
            length = self.block_size
        # Through a view of exactly the target: assigning to a slice of the whole
        # buffer also moves its tail onto itself (memmove), which costs O(image size)
        # a call on a microcontroller's byte-by-byte memmove.
        # The erased bytes through a view too: a slice of bytes would be a 4 KB copy on
        # the heap at every erase, which no flash driver of a real board allocates.
        self.mem[start:start + length][:] = memoryview(self._erased)[:length]

    def _cut_write(self, start, buf, erase_first):
        """The cut op of a write: apply the mode and return True if it must raise."""
        if self.mode == "drop" or self._lost():
            return False
        if self.mode == "torn" and self.ops - 1 == self.cut_at:
            landed = int(len(buf) * self.torn_fraction)
            if erase_first:
                # A sector write that the cut stops between its erase and the end of
                # its program destroys what the sector held before: FAT's hazard on
                # NOR flash (the bricks cannot prevent it; see lost_by_torn_rewrite).
                rest = self.mem[start + landed:start + len(buf)]
                self.torn_rewrite_lost = len(rest) - bytes(rest).count(b"\xff")
                for block in range(start // self.block_size, (start + len(buf)) // self.block_size):
                    self._erase(block)
            self._program(start, buf[:landed])
        return True

    def readblocks(self, block, buf, offset=0):
        start = block * self.block_size + offset
        buf[:] = self.mem[start:start + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        erase_first = offset is None  # simple interface (FAT): erase, then program
        start = block * self.block_size + (offset or 0)
        if self._cut_now():
            if self._cut_write(start, buf, erase_first):
                raise PowerCut(EIO)
            return
        self._remember(start, len(buf), buf, erase_first)
        if erase_first:
            for b in range(block, block + len(buf) // self.block_size):
                self._erase(b)
                self.block_erases[b] += 1
                self.erases += 1
        self._program(start, buf)
        self.programmed += len(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return self.block_size
        if op == 3:  # sync: every op before it has completed
            self.syncs += 1
            self._pending = []
            return 0
        if op == 6:  # erase
            if self._cut_now():
                if self.mode == "drop" or self._lost():
                    return 0
                if self.mode == "torn" and self.ops - 1 == self.cut_at:
                    self._erase(arg, int(self.block_size * self.torn_fraction))
                raise PowerCut(EIO)
            self._remember(arg * self.block_size, self.block_size)
            self._erase(arg)
            self.block_erases[arg] += 1
            self.erases += 1
            return 0
        return 0

    # ------------------------------------------------------------ reading the results

    def wear(self):
        """(max, mean, max/mean) of the erases per block, over every block of the device."""
        total = sum(self.block_erases)
        mean = total / self.blocks
        top = max(self.block_erases)
        return top, mean, (top / mean if mean else 0.0)

    def copy(self):
        """A powered-on copy of the flash as it is now (to mount after a cut)."""
        if new_image is None:
            data = bytearray(self.data)
        else:
            data = new_image(len(self.data))
            data[:] = self.data  # the same length: no tail to move
        twin = RAMFlash(self.block_size, self.blocks, data)
        twin.block_erases = list(self.block_erases)
        return twin


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
