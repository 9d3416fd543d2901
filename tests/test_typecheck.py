# pyright over the project (tools/typecheck.py): the core against the ESP32 and
# RP2040 MicroPython stubs, the host tools against CPython's typing. It installs
# the stubs into .venv/stubs-<port> on first use.
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_typecheck_is_clean():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "typecheck.py")], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-20000:]
