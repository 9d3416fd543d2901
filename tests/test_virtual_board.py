# The virtual board (boards/virtual) with real processes: the MicroPython unix port
# on a pty, real mpremote over socket://, SIGKILL power cuts, and `mini pull`.
import json
import os
import random
import re
import socket
import subprocess
import sys
import time

import pytest

from ministate import StateManager
from miniqueue import MiniQueue, UnknownMessage

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOARD_PY = os.path.join(TOP, "boards", "virtual", "board.py")
BRICKS = sorted(n for n in os.listdir(os.path.join(TOP, "shared")) if n.endswith(".py"))  # the core

# Device-side code that the tests of the host tools run on a board: a ministate
# directory of `count` Add records, snapshotted every `every` (None: never).
ADD_MUTATOR = """
from ministate import StateManager, Mutator
class Add(Mutator):
    def __init__(self, n):
        self.n = n
    def apply(self, state):
        state['total'] += self.n
"""


def add_state(path="/data/state", count=20, every=8):
    return ADD_MUTATOR + """
sm = StateManager.open(%r, initial={'total': 0}, mutators=[Add], snapshot_every=%r)
for i in range(%d):
    sm.apply(Add(n=i))
sm.close()
""" % (path, every, count)
sys.path.insert(0, os.path.join(TOP, "examples"))
import sensor_app  # noqa: E402  (its Count mutator and INITIAL; the app itself runs on the board)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(TOP, "shared"), os.path.join(TOP, "cpython")])
    return env


class BackgroundTail:
    """`mini tail ARGS` running in the background: the lines it prints in `lines`, what it
    says on stderr in `said` (bytes lines, as they come); stop() ends it (SIGTERM, as Ctrl-C)."""

    def __init__(self, *args):
        import threading
        self.proc = subprocess.Popen([sys.executable, "-m", "minitools.cli", "tail"] + list(args),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
        self.lines, self.said = [], []
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.said), daemon=True)]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, into):
        into.extend(iter(stream.readline, b""))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        for reader in self.readers:
            reader.join(timeout=5)


def run(cmd, timeout=60, check=True):
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=_env(), timeout=timeout, cwd=TOP)
    out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    if check:
        assert proc.returncode == 0, "%s exited %d:\n%s\n%s" % (cmd, proc.returncode, out, err)
    return proc.returncode, out, err


def mpremote(address, *args, resume=True, timeout=60):
    cmd = [sys.executable, "-m", "mpremote", "connect", address] + (["resume"] if resume else []) + list(args)
    return run(cmd, timeout=timeout)[1]


def mini(*args, timeout=120):
    return run([sys.executable, "-m", "minitools.cli"] + list(args), timeout=timeout, check=False)


class VirtualBoard:
    """board.py start/stop/reset, and the console log next to the image."""

    def __init__(self, image, board="esp32"):
        self.image = str(image)
        self.board = board
        self.address = None

    def start(self, *extra):
        code, out, err = run([sys.executable, BOARD_PY, "start", "--image", self.image, "--board", self.board]
                             + list(extra), check=False)
        assert code == 0, err
        self.address = out.strip()
        assert re.match(r"^socket://127\.0\.0\.1:\d+$", self.address), out
        return self.address

    def stop(self, power_cut=False):
        run([sys.executable, BOARD_PY, "stop", "--image", self.image] + (["--power-cut"] if power_cut else []))

    def status(self):
        code, out, _ = run([sys.executable, BOARD_PY, "status", "--image", self.image], check=False)
        return json.loads(out) if code == 0 else None

    def console(self):
        try:
            with open(self.image + ".console.log", "rb") as f:
                return f.read()
        except OSError:
            return b""

    def board_log(self):
        with open(self.image + ".board.log") as f:
            return f.read()

    def wait_console(self, needle, since=0, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.console()[since:]:
                return
            time.sleep(0.02)
        raise AssertionError("%r not in the console after %d s:\n%s" % (
            needle, timeout, self.console()[since:][-2000:].decode("utf-8", "replace")))


@pytest.fixture
def boards(tmp_path):
    made = []

    def make(name="flash.bin", board="esp32"):
        made.append(VirtualBoard(tmp_path / name, board))
        return made[-1]

    yield make
    for board in made:
        if board.status() is not None:
            board.stop(power_cut=True)


ACK = re.compile(rb"^(ack count|ack put|ack sent|sending) (\d+)(?: (\d+))?(?![\d ])")


def parse_acks(console):
    """The acknowledgements the app printed. Each is one write() of the whole text (the
    newline is a second one), so a power cut leaves it whole, perhaps without its newline:
    the next boot's first output ("sensor_app: up...") then follows on the same line."""
    counts, puts, sending, sents = [], set(), set(), set()
    for line in console.split(b"\n"):
        m = ACK.match(line)
        if not m:
            continue
        if m.group(1) == b"ack count":
            counts.append(int(m.group(3)))
        elif m.group(1) == b"ack put":
            puts.add(int(m.group(2)))
        elif m.group(1) == b"sending":
            sending.add(int(m.group(2)))
        else:
            sents.add(int(m.group(2)))
    return counts, puts, sending, sents


def test_sensor_app_loses_no_acknowledged_operation_across_power_cuts(boards, tmp_path):
    board = boards("esp32.bin", "esp32")
    address = board.start("--size-kb", "512")
    # The bricks and the app go on the board the way a user puts them there.
    mpremote(address, "fs", "mkdir", ":lib", "+", "fs", "cp", *[os.path.join("shared", b) for b in BRICKS], ":lib/",
             "+", "fs", "cp", "examples/sensor_app.py", ":main.py")
    listing = mpremote(address, "fs", "ls", ":lib")
    assert all(b in listing for b in BRICKS), listing
    assert "main.py" in mpremote(address, "fs", "ls", ":")
    board.stop(power_cut=True)

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for cycle in range(3):
        mark = len(board.console())
        board.start()  # boots, runs main.py: the app recovers and goes on
        board.wait_console(b"ack count", since=mark)
        time.sleep(rng.uniform(0, 0.3))
        board.stop(power_cut=True)  # SIGKILL at a random point of the app's writes
    mark = len(board.console())
    address = board.start()
    board.wait_console(b"ack sent", since=mark)
    counts, puts, sending, sents = parse_acks(board.console())
    assert counts and puts and sents, "seed %d" % seed

    pulled = tmp_path / "pulled"
    code, out, err = mini("pull", "--port", address, ":data", pulled)  # Ctrl-C stops the app first
    assert code == 0, "seed %d\n%s%s" % (seed, out, err)
    assert re.search(r"state: OK", out) and re.search(r"outbox: OK", out), out
    code, out, _ = mini("verify", pulled / "state", pulled / "outbox")
    assert code == 0, out

    counts, puts, sending, sents = parse_acks(board.console())  # acks printed until the Ctrl-C
    state, seq, _ = StateManager.load(str(pulled / "state"), sensor_app.INITIAL, [sensor_app.Count])
    assert state["count"] == seq >= max(counts), "seed %d: count %d, seq %d, acked %d" % (
        seed, state["count"], seq, max(counts))
    queue = MiniQueue.inspect(str(pulled / "outbox"))
    for mid in sorted(puts - sents):  # acknowledged puts: still there, or gone while being sent
        try:
            queue.deliveries(mid)
        except UnknownMessage:
            assert mid in sending, "seed %d: acked put %d is lost" % (seed, mid)
    for mid in sorted(sents):         # acknowledged sends: never come back
        with pytest.raises(UnknownMessage):
            queue.deliveries(mid)
    assert "power cut" in board.board_log()
    board.stop()


def _repl(address):
    host, port = address[len("socket://"):].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.settimeout(0.05)
    buf = bytearray()

    def expect(needle, timeout=10):
        deadline = time.monotonic() + timeout
        while needle not in buf:
            if time.monotonic() > deadline:
                raise AssertionError("%r not seen; got %r" % (needle, bytes(buf[-500:])))
            try:
                data = sock.recv(4096)
            except socket.timeout:
                continue
            assert data, "the board closed the line; got %r" % bytes(buf[-500:])
            buf.extend(data)
        at = buf.index(needle) + len(needle)
        seen = bytes(buf[:at])
        del buf[:at]
        return seen

    return sock, expect


def test_ctrl_c_at_the_repl_and_in_running_code(boards):
    board = boards()
    address = board.start()
    sock, expect = _repl(address)
    try:
        sock.sendall(b"\x03\x03\x03")  # at the idle REPL: cancels the line, never kills
        expect(b">>> ")
        sock.sendall(b"x = 6 * 7\rprint(x)\r")
        expect(b"42")
        sock.sendall(b"while True: pass\r\r")
        time.sleep(0.3)
        sock.sendall(b"\x03")  # running code: KeyboardInterrupt
        expect(b"KeyboardInterrupt")
        sock.sendall(b"print(x + 1)\r")  # same interpreter, same globals
        expect(b"43")
        sock.sendall(b"\x01")  # the raw REPL, typed right away
        expect(b"raw REPL; CTRL-B to exit\r\n>")
        sock.sendall(b"import sys, os\rprint(sys.path, os.getcwd(), os.listdir('/'))\x04")
        seen = expect(b"\x04>")
        assert b"['', '.frozen', '/lib'] / []" in seen, seen
        sock.sendall(b"\x02")
        expect(b">>> ")
    finally:
        sock.close()
    assert board.status()["boots"] == 1  # never restarted
    board.stop()


STRESS_APP = """
import io, sys
hits = n = 0
while hits < 12:
    try:
        while True:
            n += 1
            with open('/f%d' % (n % 5), 'w') as f:
                f.write(('%d-' % n) * (n % 200 + 1))
            if n % 40 == 0:
                print('n', n)
    except KeyboardInterrupt as e:
        hits += 1
        s = io.StringIO()
        sys.print_exception(e, s)
        print('hit', hits, s.getvalue().strip().splitlines()[-2].strip())
"""


def test_ctrl_c_never_lands_inside_littlefs(boards, tmp_path):
    """This unix port raises KeyboardInterrupt from its signal handler, wherever the
    interpreter is: the supervisor delivers Ctrl-C only at a safe point, here the
    app's next print (the board's output is suspended meanwhile)."""
    board = boards()
    app = tmp_path / "stress.py"
    app.write_text(STRESS_APP)
    address = board.start("--main", app, "--size-kb", "256")
    board.wait_console(b"n 40")
    host, port = address[len("socket://"):].rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        for k in range(1, 13):
            sent = time.monotonic()
            sock.sendall(b"\x03")
            board.wait_console(b"hit %d " % k)  # landed, once
            time.sleep(max(0.0, sent + 0.3 - time.monotonic()))  # the board merges Ctrl-Cs 0.25 s apart
    hits = re.findall(rb"hit \d+ ([^\n]*)", board.console())  # may follow a print cut short
    assert len(hits) == 12 and all(b'"main.py", line 11' in line for line in hits), hits
    assert board.status()["boots"] == 1
    board.stop(power_cut=True)
    code, out, err = mini("image", "extract", board.image, "--board", "esp32", tmp_path / "files")
    assert code == 0, err
    for name in os.listdir(tmp_path / "files"):
        if name.startswith("f"):
            text = (tmp_path / "files" / name).read_text()
            count = text.split("-")[0]
            assert text == (count + "-") * (int(count) % 200 + 1), name


def test_main_py_is_interrupted_by_mpremote_and_plain_connect_soft_resets(boards, tmp_path):
    board = boards()
    app = tmp_path / "loop.py"
    app.write_text("import time\nBOOTED = 1\nn = 0\nwhile True:\n    n += 1\n    print('tick', n)\n"
                   "    time.sleep_ms(20)\n")
    address = board.start("--main", app)
    board.wait_console(b"tick 3")
    # resume: no soft reset; the Ctrl-C stops main.py, its globals stay, like a board
    out = mpremote(address, "exec", "print('booted', BOOTED, n > 2)")
    assert "booted 1 True" in out
    assert b"KeyboardInterrupt" in board.console()
    script = tmp_path / "hello.py"
    script.write_text("import os\nprint('hello from', os.getcwd(), sorted(os.listdir('/')))\n")
    assert "hello from / ['main.py']" in mpremote(address, "run", script)
    # plain connect soft-resets: the unix port exits, the board reboots into the raw REPL
    out = mpremote(address, "exec", "print('after reset', 'BOOTED' in globals())", resume=False)
    assert "after reset False" in out
    assert b"MPY: soft reboot" in board.console()
    assert "soft reboot into the raw REPL" in board.board_log()
    ticks = board.console().count(b"tick ")
    time.sleep(0.3)
    assert board.console().count(b"tick ") == ticks  # main.py does not run after a raw-REPL soft reset
    # Ctrl-D at the friendly REPL: a soft reboot that runs main.py again
    mark = len(board.console())
    sock, expect = _repl(address)
    try:
        sock.sendall(b"\x03")
        expect(b">>> ")
        sock.sendall(b"\x04")
        expect(b"MPY: soft reboot")
        board.wait_console(b"tick 2", since=mark)
    finally:
        sock.close()
    # the reset button; boot.py runs before main.py
    boot = tmp_path / "boot.py"
    boot.write_text("print('boot.py here')\n")
    mpremote(address, "fs", "cp", boot, ":boot.py")
    mark = len(board.console())
    run([sys.executable, BOARD_PY, "reset", "--image", board.image])
    board.wait_console(b"tick 2", since=mark)
    after = board.console()[mark:]
    assert b"boot.py here" in after and after.index(b"boot.py here") < after.index(b"tick 1")
    assert board.status()["boots"] >= 3
    board.stop()
    assert "off (stop" in board.board_log()


def test_preload_and_board_errors(boards, tmp_path):
    board = boards("rp.bin", "rp2040")
    address = board.start("--preload", "--size-kb", "512")
    out = mpremote(address, "exec", "import os, miniqueue; print(sorted(os.listdir('/lib')), os.statvfs('/')[0])")
    assert str(sorted(BRICKS)) in out and "4096" in out
    code, _, err = run([sys.executable, BOARD_PY, "start", "--image", board.image], check=False)
    assert code == 2 and "already running at " + address in err and len(err.strip().splitlines()) == 1
    # the micropython process killed from outside (kill -9): the board is off...
    os.kill(board.status()["micropython_pid"], 9)
    deadline = time.monotonic() + 10
    while board.status() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert board.status() is None and "power cut" in board.board_log()
    # ...and boots again from the same flash
    address = board.start()
    assert str(sorted(BRICKS)) in mpremote(address, "exec", "import os; print(sorted(os.listdir('/lib')))")
    board.stop()
    code, out, _ = run([sys.executable, BOARD_PY, "stop", "--image", board.image])
    assert "not running" in out
    code, out, _ = run([sys.executable, BOARD_PY, "status", "--image", board.image], check=False)
    assert code == 3 and out.strip() == "off"
    code, _, err = run([sys.executable, BOARD_PY, "start", "--image", board.image, "--size-kb", "1024"], check=False)
    assert code == 2 and "512 KiB" in err
    code, _, err = run([sys.executable, BOARD_PY, "start", "--image", tmp_path / "no" / "dir.bin"], check=False)
    assert code == 2 and "no such directory" in err
    code, _, err = run([sys.executable, BOARD_PY, "reset", "--image", board.image], check=False)
    assert code == 2 and "not running" in err

    # a flash that is not blank and does not mount: the board comes up without a
    # filesystem and never formats it (its files may still be recovered)
    broken = boards("broken.bin")
    rng = random.Random(5)
    data = bytes(rng.randrange(256) for _ in range(64 * 4096))
    with open(broken.image, "wb") as f:
        f.write(data)
    broken.start()
    broken.wait_console(b"does not mount")
    broken.stop()
    with open(broken.image, "rb") as f:
        assert f.read() == data
