# `mpremote mip install` of one brick's package.json, with real mpremote, onto a
# fresh virtual board: it installs exactly what that brick needs, and it works there.
import os
import subprocess
import sys

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOARD = os.path.join(TOP, "boards", "virtual", "board.py")

WANT = {
    "ministore": ["minidamage.py", "miniformat.py", "minireader.py", "minishim.py", "ministore.py"],
    "miniqueue": ["minidamage.py", "miniformat.py", "minilog.py", "minimessages.py", "miniqueue.py", "minireader.py",
                  "minishim.py", "ministore.py", "miniwait.py"],  # no minisnap
}
SMOKE = {
    "ministore": "from ministore import MiniStore\nwith MiniStore.open('/data/j.jsonl') as s:\n    s.append({'t': 1})\n"
                 "print('smoke', MiniStore.replay('/data/j.jsonl'))",
    "miniqueue": "from miniqueue import MiniQueue\nq = MiniQueue.open('/data/q')\nq.put('m')\n"
                 "print('smoke', q.get())\nq.close()",
}


def sh(*cmd, timeout=90):
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          cwd=TOP, timeout=timeout)
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, out
    return out


@pytest.mark.parametrize("brick", sorted(WANT))
def test_mip_installs_one_brick_and_only_what_it_needs(tmp_path, brick):
    image = str(tmp_path / "flash.bin")
    address = sh(sys.executable, BOARD, "start", "--image", image, "--board", "esp32").strip()
    try:
        mpremote = [sys.executable, "-m", "mpremote", "connect", address, "resume"]
        out = sh(*mpremote, "mip", "install", "--target", "/lib", "micropython/%s/package.json" % brick)
        assert "Done" in out, out
        listing = sh(*mpremote, "fs", "ls", ":lib")
        names = sorted(line.split()[-1] for line in listing.splitlines()[1:] if line.strip())
        assert names == WANT[brick], listing
        out = sh(*mpremote, "exec", SMOKE[brick])
        assert "smoke" in out and ("{'t': 1}" in out or "'m')" in out), out
    finally:
        sh(sys.executable, BOARD, "stop", "--image", image, "--power-cut")
