#!/usr/bin/env python3
"""Type-check the project with pyright: the core against each board's MicroPython
stubs, the host tools against CPython's typing.

    python3 tools/typecheck.py          (./run typecheck; tests/test_typecheck.py runs it)

The stubs packages (micropython-esp32-stubs, micropython-rp2-stubs) each ship a
typeshed-style stdlib, so each is installed in its own folder (installed together
they overwrite each other): .venv/stubs-<port>, fetched with pip on first use.
Checks:
  core on esp32   shared/ and the ESP32 board files, typeshed = the esp32 stubs
  core on rp2     shared/ and the RP2040 board files, typeshed = the rp2 stubs
  virtual board   boards/virtual/vboot.py and flashfile.py (they run on the unix
                  port), against the esp32 stubs
  host (CPython)  shared/, cpython/, boards/virtual/board*.py (the package miniboard) and
                  tools/, CPython typeshed
  user program    tests/typing/user_program.py in strict mode against the type stubs users
                  get (stubs/NAME-stubs, ahead of shared/ in the path), and the stubs
                  themselves; tests/test_user_types.py does it again on an installed wheel
Where a stub is wrong or missing something the code uses only on another runtime,
the line carries `# pyright: ignore[rule] (stub gap)` and the gap is listed in
micropython/README.md; the runtime tests decide what works.
Exit status: 0 when every check is clean.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = "<packages>"  # in extraPaths: a folder where boards/virtual is the package miniboard, as installed
STUBS = {"esp32": "micropython-esp32-stubs", "rp2": "micropython-rp2-stubs"}


def files(*patterns):
    out = []
    for pattern in patterns:
        out.extend(sorted(glob.glob(os.path.join(ROOT, pattern))))
    return out


def stubs_dir(port):
    """The folder holding `port`'s stubs, installed there with pip if it is not yet."""
    where = os.path.join(os.environ.get("MINI_STUBS_DIR", os.path.join(ROOT, ".venv")), "stubs-" + port)
    if not os.path.exists(os.path.join(where, "stdlib")):
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                               "--target", where, STUBS[port]])
    return where


def checks():
    core = files("shared/*.py")
    esp32, rp2 = stubs_dir("esp32"), stubs_dir("rp2")
    board = {"reportMissingModuleSource": False}
    return [
        ("core on esp32", core + files("boards/sensor_logger.py", "boards/esp32/*.py"),
         dict(board, typeshedPath=esp32, extraPaths=[esp32, ROOT + "/shared", ROOT + "/boards"])),
        ("core on rp2", core + files("boards/sensor_logger.py", "boards/rp2040/*.py"),
         dict(board, typeshedPath=rp2, extraPaths=[rp2, ROOT + "/shared", ROOT + "/boards"])),
        ("virtual board (unix port)", files("boards/virtual/vboot.py", "boards/virtual/flashfile.py",
                                                   "boards/virtual/flashgeometry.py"),
         dict(board, typeshedPath=esp32, extraPaths=[esp32, ROOT + "/shared", ROOT + "/boards/virtual"])),
        ("host tools (CPython)", core + files("cpython/minitools/*.py", "boards/virtual/board*.py",
                                                           "boards/virtual/interpreter_watch.py", "tools/*.py"),
         {"extraPaths": [ROOT + "/shared", ROOT + "/cpython", ROOT + "/boards/virtual", PACKAGES]}),
        ("user program (strict, stubs)", files("tests/typing/user_program.py", "stubs/*-stubs/__init__.pyi"),
         {"typeCheckingMode": "strict", "pythonVersion": "3.8", "extraPaths": [ROOT + "/stubs", ROOT + "/shared"]}),
    ]


def pyright_command():
    here = os.path.join(os.path.dirname(sys.executable), "pyright")
    return [here] if os.path.exists(here) else ["pyright"]


def main():
    failed = []
    for name, paths, config in checks():
        config = dict({"pythonVersion": "3.11", "typeCheckingMode": "basic"}, **config)
        with tempfile.TemporaryDirectory() as tmp:
            if PACKAGES in config.get("extraPaths", []):
                os.symlink(os.path.join(ROOT, "boards", "virtual"), os.path.join(tmp, "miniboard"))
                config = dict(config, extraPaths=[tmp if p == PACKAGES else p for p in config["extraPaths"]])
            path = os.path.join(tmp, "pyrightconfig.json")
            with open(path, "w") as f:
                json.dump(config, f)
            # --pythonpath: the packages of the interpreter running this (the venv's), whatever python3 PATH finds
            proc = subprocess.run(pyright_command() + ["-p", path, "--pythonpath", sys.executable] + paths, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "no output"
        print("%-28s %d files: %s" % (name, len(paths), summary))
        if proc.returncode != 0:
            failed.append(name)
            print(proc.stdout)
    if failed:
        print("FAILED: %s" % ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
