# boot.py: runs at every boot, before main.py. Keep it small: a mistake here
# can keep the board from reaching the REPL.
import gc
import os

gc.collect()
try:
    size, _, blocks, free = os.statvfs("/")[:4]
    print("boot: flash %d KiB, %d KiB free" % (size * blocks // 1024, size * free // 1024))
except OSError:
    pass
