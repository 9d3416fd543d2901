# A second `board.py start` on an image that another board owns must be refused before
# it writes a byte: the image's lock (IMAGE.board.lock) is taken before the image is
# created, files are installed or the board boots, and held until the board is off. And
# a start that fails on its arguments leaves no image behind. Real processes throughout:
# board.py, the unix-port board, mpremote.
import fcntl
import os
import subprocess
import sys
import time

from test_virtual_board import BOARD_PY, BRICKS, VirtualBoard, _env, mpremote, run

APP_A = "print('app A')\n"
APP_B = "print('app B')\n" * 50


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _start(image, *extra):
    return subprocess.Popen([sys.executable, BOARD_PY, "start", "--image", str(image)] + [str(e) for e in extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True)


def test_a_start_or_serve_while_the_image_is_locked_writes_nothing(tmp_path):
    app_a, app_b = tmp_path / "app_a.py", tmp_path / "app_b.py"
    app_a.write_text(APP_A)
    app_b.write_text(APP_B)
    board = VirtualBoard(tmp_path / "flash.bin")
    board.start("--size-kb", "512", "--preload", "--main", app_a)
    board.stop()
    before = _read(board.image)
    # held as the board that owns the image holds it, from its start until it is off
    lock = os.open(board.image + ".board.lock", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = run([sys.executable, BOARD_PY, "start", "--image", board.image, "--preload",
                            "--main", app_b], check=False)
        assert code == 2 and "already running on this image" in err, err
        assert _read(board.image) == before
        assert board.status() is None
        # serve, too, takes the lock before it creates a missing image
        other = tmp_path / "other.bin"
        with open(str(other) + ".board.lock", "w"):
            pass
        held = os.open(str(other) + ".board.lock", os.O_RDWR)
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            code, _, err = run([sys.executable, BOARD_PY, "serve", "--image", other], check=False, timeout=20)
            assert code == 2 and "already running on this image" in err, err
            assert not other.exists()
        finally:
            os.close(held)
    finally:
        os.close(lock)
    address = board.start()
    out = mpremote(address, "exec", "import os; print(sorted(os.listdir('/lib'))); print(open('/main.py').read())")
    assert str(sorted(BRICKS)) in out and "app A" in out and "app B" not in out
    board.stop()


def test_a_second_start_while_the_first_is_starting_is_refused(tmp_path):
    app_a, app_b = tmp_path / "app_a.py", tmp_path / "app_b.py"
    app_a.write_text(APP_A)
    app_b.write_text(APP_B)
    image = tmp_path / "flash.bin"
    first = _start(image, "--size-kb", "512", "--preload", "--main", app_a)
    second = None
    try:
        # the image appears while the first start installs the bricks, long before its
        # board is up and has written its state file: the window the lock must cover
        deadline = time.monotonic() + 20
        while not image.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert image.exists(), first.communicate()
        second = _start(image, "--main", app_b)
        out_b, err_b = second.communicate(timeout=60)
        out_a, err_a = first.communicate(timeout=60)
        assert first.returncode == 0, err_a
        assert second.returncode == 2 and "already running" in err_b and not out_b, (out_b, err_b)
        out = mpremote(out_a.strip(), "exec",
                       "import os; print(sorted(os.listdir('/lib'))); print(open('/main.py').read())")
        assert str(sorted(BRICKS)) in out and "app A" in out and "app B" not in out
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        run([sys.executable, BOARD_PY, "stop", "--image", image, "--power-cut"], check=False)
    # and the flash the first board ran on still boots, with its files
    board = VirtualBoard(image)
    address = board.start()
    out = mpremote(address, "exec", "print(open('/main.py').read())")
    assert "app A" in out and "app B" not in out
    board.stop()


def test_a_start_that_fails_leaves_no_image_behind(tmp_path):
    image = tmp_path / "flash.bin"
    for extra in (["--main", tmp_path / "missing.py"], ["--preload", "--main", tmp_path / "missing.py"]):
        code, out, err = run([sys.executable, BOARD_PY, "start", "--image", image] + extra, check=False)
        assert code == 2 and "missing.py: no such file" in err and not out, err
        assert not image.exists()
    # the bricks do not fit a 64 KiB flash: the image this start created goes again
    code, _, err = run([sys.executable, BOARD_PY, "start", "--image", image, "--size-kb", "64", "--preload"],
                       check=False)
    assert code == 2 and "could not write files onto" in err, err
    assert not image.exists()
    # an image that was there before is left as it was
    app = tmp_path / "app.py"
    app.write_text(APP_A)
    board = VirtualBoard(image)
    board.start("--main", app)
    board.stop()
    before = _read(board.image)
    code, _, err = run([sys.executable, BOARD_PY, "start", "--image", image, "--main", tmp_path / "missing.py"],
                       check=False)
    assert code == 2 and "no such file" in err
    assert _read(board.image) == before and board.status() is None
