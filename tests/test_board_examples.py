# Each board's boot.py/main.py, copied with real mpremote onto a virtual board of
# that board's geometry: it boots, logs, survives a power cut, and the count it
# acknowledged before the cut is there after the reboot.
import os
import re
import subprocess
import sys
import time

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOARD = os.path.join(TOP, "boards", "virtual", "board.py")


def sh(*cmd, timeout=90):
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          cwd=TOP, timeout=timeout)
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, out
    return out


def console(image):
    with open(image + ".console.log", "rb") as f:
        return f.read().decode("utf-8", "replace")


def wait_for(image, pattern, count, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = re.findall(pattern, console(image))
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError("no %r in the console:\n%s" % (pattern, console(image)[-3000:]))


@pytest.mark.parametrize("board", ["esp32", "rp2040"])
def test_board_example_runs_and_survives_a_power_cut(tmp_path, board):
    image = str(tmp_path / "flash.bin")
    address = sh(sys.executable, BOARD, "start", "--image", image, "--board", board, "--preload").strip()
    try:
        mpremote = [sys.executable, "-m", "mpremote", "connect", address, "resume"]
        sh(*mpremote, "fs", "cp", "boards/sensor_logger.py", ":lib/sensor_logger.py",
           "+", "fs", "cp", "boards/%s/boot.py" % board, ":boot.py",
           "+", "fs", "cp", "boards/%s/main.py" % board, ":main.py")
        sh(sys.executable, BOARD, "reset", "--image", image)
        wait_for(image, r"boot: flash \d+ KiB", 1)
        acked = wait_for(image, r"ack count \d+ (\d+)", 2)
        sh(sys.executable, BOARD, "stop", "--image", image, "--power-cut")
        last = int(re.findall(r"ack count \d+ (\d+)", console(image))[-1])
        assert last >= int(acked[-1])
        sh(sys.executable, BOARD, "start", "--image", image)
        ups = wait_for(image, r"logger: up, count (\d+)", 2)
        assert int(ups[-1]) >= last, (ups, last)
    finally:
        subprocess.run([sys.executable, BOARD, "stop", "--image", image, "--power-cut"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
