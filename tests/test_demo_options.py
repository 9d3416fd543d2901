# Issue 17, the demo: --help shows help (and runs nothing), --workdir/--keep keep the
# output folder, and the demo says when the board rebooted and why its port changed.
# One more run of the demo: about 10 s.
import os
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(TOP, "examples", "demo.py")


def demo(*args, timeout=120):
    proc = subprocess.run([sys.executable, DEMO] + [str(a) for a in args], cwd=TOP,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def test_help_shows_help_and_runs_nothing():
    code, out = demo("--help", timeout=30)
    assert code == 0 and out.startswith("usage: demo.py") and "--keep" in out and "--workdir" in out, out
    assert "== 1." not in out
    code, out = demo("--no-such-option", timeout=30)
    assert code == 2 and "usage:" in out and "== 1." not in out


def test_workdir_is_kept_and_the_reboots_are_explained(tmp_path):
    work = tmp_path / "demo-out"
    code, out = demo("--workdir", work)
    assert code == 0 and "RESULT: every acknowledged reading survived" in out, out
    assert out.count("power back on at ") == 2, out
    assert out.count("its serial line is now socket://127.0.0.1:") == 2 and "a new port, because" in out, out
    assert "kept the output in %s" % work in out
    for name in ("esp32-flash.bin", "esp32-flash.bin.console.log", os.path.join("pulled", "state"),
                 os.path.join("cpython", "journal.jsonl")):
        assert os.path.exists(str(work / name)), name
    code, out = demo("--workdir", work, timeout=30)  # not empty: refused before anything runs
    assert code != 0 and "not empty" in out and "== 1." not in out
