# Flash images for the emulated microcontroller (tools/firmware.py, ports/qemu
# MICROBIT), in RAM outside the MicroPython heap.
#
# The firmware links against the first 256 KB of the emulated RAM; qemu gives the
# board 16 MB (tools/firmware.py SRAM_BYTES). The rest is free memory that the GC
# heap never sees, as a real board's flash is not in its heap: the RAM block
# devices of tests/mp/blockdev.py keep their images here, so a test on a 128 KB
# heap has a 128 KB heap, not a heap minus a 2 MB flash image.
#
# Images are handed out round-robin from the region, and never freed: an image
# must be garbage before the ring comes back to it. A power-cut sweep holds at most
# three at once (the cut flash, its reboot copy, a second reboot), 512 KB each, and
# the ring holds 31 of them.
import uctypes

import blockdev

START = 0x20040000             # tools/firmware.py RAM_EXTRA_START
END = 0x20000000 + 16 * 1024 * 1024
_next = [START]
_ERASED = b"\xff" * 4096


def new_image(size):
    """A buffer of `size` bytes outside the heap, filled with 0xFF (erased NOR flash)."""
    size = (size + 4095) & ~4095
    if size > END - START:
        raise MemoryError("flash image of %d bytes: more than the %d outside the heap" % (size, END - START))
    if _next[0] + size > END:
        _next[0] = START
    addr = _next[0]
    _next[0] += size
    image = uctypes.bytearray_at(addr, size)
    view = memoryview(image)
    for at in range(0, size, 4096):
        view[at:at + 4096][:] = _ERASED  # a view of exactly 4 KB: no tail to memmove
    return image


def install():
    blockdev.new_image = new_image
