# Issue 17: `mini tail --follow` on a board whose app is running. Each poll is an
# mpremote exchange, which interrupts main.py (Ctrl-C), as on a real board; with
# --resume, tail soft-resets the board after each poll, so main.py runs again and
# carries on from its journal. On the virtual board: new records appear within 2 s,
# and the app's count keeps rising while tail follows it, and after.
import os
import re
import subprocess
import sys
import threading
import time

from test_virtual_board import TOP, BackgroundTail, VirtualBoard

# A slow sensor app: one durable record every 50 ms, its count printed after each.
APP = """
import time
from ministore import MiniStore
with MiniStore.open('/logs/app.jsonl') as store:
    count = store.seq
    print('app: up at', count)
    while True:
        count = store.append({'count': count + 1, 'temp_c': 20 + count % 7})
        print('count', count)
        time.sleep_ms(50)
"""


def counts(board):
    return [int(c) for c in re.findall(rb"count (\d+)", board.console())]


def _wait(condition, what, seconds=20):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "no %s within %d s" % (what, seconds)
        time.sleep(0.05)


def _runs_on(board, during):
    """After tail: the app counts on by itself (it appends every 50 ms)."""
    _wait(lambda: counts(board)[-1] > during + 5, "count past %d (the app stopped?)" % (during + 5))


def test_tail_follow_resume_keeps_a_running_app_running(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(APP)
    board = VirtualBoard(tmp_path / "flash.bin", "esp32")
    address = board.start("--preload", "--main", str(app), "--size-kb", "512")
    try:
        board.wait_console(b"count 5")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(TOP, "shared"),
                                                           os.path.join(TOP, "cpython")]))
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "minitools.cli", "tail", "--port", address, "logs/app.jsonl",
                                 "--follow", "--resume", "-n", "0", "--interval", "0.3"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        arrivals = []

        def read():
            for line in iter(proc.stdout.readline, b""):
                arrivals.append((time.monotonic(), line.decode().strip()))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            time.sleep(8)
        finally:
            stopped = time.monotonic()  # what follows is tail shutting down, not following
            proc.terminate()
            proc.wait(timeout=10)
            reader.join(timeout=5)
        err = proc.stderr.read().decode()
        assert "Traceback" not in err, err
        assert len(arrivals) > 10, (arrivals, err)
        times = [started] + [at for at, _ in arrivals]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert max(gaps[1:]) < 2.0 and gaps[0] < 5.0, gaps  # the first includes starting tail and its first poll
        assert stopped - arrivals[-1][0] < 2.0, "no new record in the last 2 s of following"
        seqs = [int(re.match(r'\{"seq":(\d+),', line).group(1)) for _, line in arrivals]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # every record, in order, once
        during = counts(board)[-1]
        assert during >= seqs[-1] - 1, (during, seqs[-1])  # tail printed what the app acknowledged
        _runs_on(board, during)
    finally:
        board.stop(power_cut=True)


def test_tail_follow_resume_carries_on_when_the_board_is_lost_and_back(tmp_path):
    """A power cut (the board unplugged) while tail follows: tail says so, retries, and
    when the board is back on the same port it prints the records after the last one it
    showed, each once, and the app runs on."""
    app = tmp_path / "app.py"
    app.write_text(APP)
    board = VirtualBoard(tmp_path / "flash.bin", "esp32")
    address = board.start("--preload", "--main", str(app), "--size-kb", "512")
    number = address.rsplit(":", 1)[1]
    try:
        board.wait_console(b"count 5")
        tail = BackgroundTail("--port", address, "logs/app.jsonl", "--follow", "--resume", "-n", "0",
                              "--interval", "0.3")
        lines, said = tail.lines, tail.said
        try:
            _wait(lambda: len(lines) >= 4, "tail's first records")
            board.stop(power_cut=True)
            shown_before = len(lines)
            time.sleep(2)
            board.start("--port", number)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (len(lines) < shown_before + 10 or b"is back" not in b"".join(said)):
                time.sleep(0.1)
        finally:
            tail.stop()
        err = b"".join(said).decode()
        assert "Traceback" not in err, err
        assert "lost the device" in err and "is back" in err, err
        seqs = [int(re.match(rb'\{"seq":(\d+),', line).group(1)) for line in lines]
        assert shown_before > 3 and len(seqs) >= shown_before + 10, (seqs, err)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # every record, in order, once
        _runs_on(board, counts(board)[-1])  # tail left the app running
    finally:
        board.stop(power_cut=True)
