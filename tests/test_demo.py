# The README's first command (./run demo) runs examples/demo.py: it must keep working.
import os
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_runs_and_loses_nothing():
    proc = subprocess.run([sys.executable, os.path.join(TOP, "examples", "demo.py")], cwd=TOP,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, out
    assert "RESULT: every acknowledged reading survived" in out, out
    assert "pulled/state: OK" in out and "pulled/outbox: OK" in out, out
