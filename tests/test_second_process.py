# A second process that opens the same journal, state directory or queue for
# writing gets a clear LockedError, and gets in once the first one is gone,
# even when the first one died by SIGKILL (the kernel drops its flock).
import os
import signal
import subprocess
import sys

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OPENERS = {
    "journal": "from ministore import MiniStore as M; h = M.open(%r)",
    "state": "from ministate import StateManager as M; h = M.open(%r)",
    "queue": "from miniqueue import MiniQueue as M; h = M.open(%r)",
}


def child(code):
    env = dict(os.environ, PYTHONPATH=os.path.join(TOP, "shared"))
    return subprocess.Popen([sys.executable, "-c", code], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("kind", sorted(OPENERS))
def test_second_process_gets_locked_error(tmp_path, kind):
    target = str(tmp_path / ("j.jsonl" if kind == "journal" else kind))
    holder = child(OPENERS[kind] % target + "\nprint('open', flush=True)\nimport time; time.sleep(60)")
    try:
        assert holder.stdout.readline().strip() == b"open", holder.stderr.read()
        second = child("import ministore\ntry:\n    " + OPENERS[kind] % target +
                       "\nexcept ministore.LockedError as e:\n    print('LockedError:', e)")
        out, err = second.communicate(timeout=30)
        assert b"LockedError:" in out and b"already open for writing" in out, (out, err)
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # a crash, not a clean close
        holder.wait()
    third = child(OPENERS[kind] % target + "\nprint('open')")
    out, err = third.communicate(timeout=30)
    assert out.strip() == b"open", err
