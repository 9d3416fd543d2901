"""Size and import heap of each brick as .mpy, on the MicroPython unix port.

    python3 micropython/measure_mpy.py

For each brick, a fresh `micropython` imports its dependencies, runs gc.collect(),
reads gc.mem_alloc(), imports the brick, collects again and reads it again: the
difference is what importing that brick alone costs. "with deps" is the cost of
importing it into an empty interpreter.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import build_mpy

import bricks

DEPS = {name: bricks.closure(name)[:-1] for name in bricks.core_modules()}

PROBE = """
import sys, gc
sys.path.insert(0, %r)
for dep in %r:
    __import__(dep)
gc.collect(); base = gc.mem_alloc()
__import__(%r)
gc.collect(); after = gc.mem_alloc()
print(after - base)
"""


def heap(mpy_dir, modules):
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    exe = exe if os.path.exists(exe) else shutil.which("micropython")
    out = subprocess.run([exe, "-c", PROBE % (mpy_dir, modules[:-1], modules[-1])],
                         stdout=subprocess.PIPE, check=True).stdout
    return int(out.split()[-1])


def main():
    out = tempfile.mkdtemp()
    sizes = build_mpy.build(out)
    print("| brick | .mpy bytes | import heap, alone | import heap, with its deps |")
    print("|---|---|---|---|")
    for name, deps in DEPS.items():
        alone = heap(out, deps + [name])
        total = 0
        for i in range(len(deps) + 1):
            total += heap(out, (deps + [name])[:i + 1])
        print("| %s | %d | %d | %d |" % (name, sizes[name], alone, total))
    shutil.rmtree(out)


if __name__ == "__main__":
    main()
