# Runs the test scripts on the emulated microcontroller: ports/qemu BOARD=MICROBIT
# (Cortex-M0, float32, 31-bit small ints, 192 KB or 128 KB heap) under
# qemu-system-arm, built by tools/firmware.py. The project code (shared/,
# tests/core, tests/mp, tests/mcu) goes into a ROMFS image, compiled to .mpy:
# mounted at /rom, it runs in place from flash, so it costs the heap what frozen
# code costs. A short script sent over the raw REPL sets sys.path and sys.argv and
# imports the test script, which ends with "N passed, N failed".
import os
import shutil
import sys

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.join(TOP, "tools"))  # appended: tools/reliability.py must not hide tests/reliability.py
import firmware  # noqa: E402

ROM_PATH = ["/rom/tests/mcu", "/rom/tests/mp", "/rom/tests/core", "/rom/shared"]
ROMFS_TREE = {  # folder in the repository -> the .py files that go into the image
    "shared": None,  # all
    "tests/core": None,
    "tests/mcu": None,
    "tests/mp": ["blockdev.py", "runner.py", "powercut.py", "powercut_ministore.py",
                 "powercut_ministate.py", "powercut_miniqueue.py"],
}

_image = {}


def firmware_or_skip(target):
    """tools/firmware.py build(target); skip (with the reason) only where it truly cannot be built."""
    try:
        return firmware.build(target)
    except firmware.Unavailable as exc:
        pytest.skip(str(exc))


def romfs_image(tmp_root):
    """The ROMFS image of the project code (built once per session)."""
    if "path" not in _image:
        src = os.path.join(tmp_root, "romfs-src")
        for folder, names in ROMFS_TREE.items():
            dest = os.path.join(src, folder)
            os.makedirs(dest)
            for name in names or sorted(os.listdir(os.path.join(TOP, folder))):
                if name.endswith(".py"):
                    shutil.copy(os.path.join(TOP, folder, name), dest)
        _image["path"] = os.path.join(tmp_root, "mini-romfs.img")
        firmware.romfs(src, _image["path"])
    return _image["path"]


def board_script(module, argv, setup=""):
    """The raw-REPL script that runs tests/.../<module>.py with sys.argv = [module] + argv."""
    return "\n".join([
        "import sys",
        "sys.path[:0] = %r" % ROM_PATH,
        "import extram",
        "extram.install()",
        setup,
        "sys.argv[:] = %r" % ([module + ".py"] + list(argv)),
        "import %s" % module,
        ""])


def run_on_board(target, image, module, argv, setup="", timeout=1800):
    """Run a test script on the emulated board; fail unless it ends with 'N passed, 0 failed'."""
    firmware_or_skip(target)
    code, out = firmware.run(target, board_script(module, argv, setup), image, timeout)
    lines = [line for line in out.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    ran = not last.startswith("0 passed") or (len(lines) > 1 and lines[-2].endswith(" xfailed")
                                              and not lines[-2].startswith("0 "))
    if code != 0 or not last.endswith(" 0 failed") or not ran:
        pytest.fail("%s %s on %s exited %d:\n%s" % (module, " ".join(argv), target, code, out[-20000:]))
    return out


def core_modules():
    """The core test modules (tests/core/test_*.py), by name: the ROMFS has only their .mpy."""
    return sorted(n[:-3] for n in os.listdir(os.path.join(TOP, "tests", "core"))
                  if n.startswith("test_") and n.endswith(".py"))
