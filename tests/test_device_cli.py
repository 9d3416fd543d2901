# `mini pull`, `mini tail` and `mini image extract` against the virtual board
# (real micropython, real mpremote), and their error paths: one line, exit 2.
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from ministore import MiniStore, record_line, encode_json
from ministate import StateManager, Mutator
from minitools import device as device_cli
from minitools import follower as follower_module

from test_virtual_board import TOP, VirtualBoard, add_state, mini, mpremote, BRICKS

MAKE = add_state() + """
from ministore import MiniStore
with MiniStore.open('/logs/journal.jsonl') as s:
    for i in range(30):
        s.append({'i': i, 'tag': 'reading'})
print('made')
"""

EXPECTED = [{"i": i, "tag": "reading"} for i in range(30)]


class Add(Mutator):
    def __init__(self, n):
        self.n = n

    def apply(self, state):
        state["total"] += self.n


def append_code(path, start, count):
    return ("from ministore import MiniStore\nwith MiniStore.open('%s') as s:\n"
            "    for i in range(%d, %d):\n        s.append({'i': i})\n" % (path, start, start + count))


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    board = VirtualBoard(tmp_path_factory.mktemp("device") / "flash.bin", "esp32")
    address = board.start("--preload", "--size-kb", "512")
    assert "made" in mpremote(address, "exec", MAKE)
    yield board
    if board.status() is not None:
        board.stop(power_cut=True)


def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return "socket://127.0.0.1:%d" % port


def one_line_error(code, err, *words):
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err


# ------------------------------------------------------------------ pull

def test_pull_copies_a_directory_and_verifies_it(device, tmp_path):
    local = tmp_path / "logs"
    code, out, err = mini("pull", "--port", device.address, ":logs", local, "--progress")
    assert code == 0, out + err
    assert "pulled 1 files" in out and "journal.jsonl: OK" in out
    assert "1/1 files" in err and "[" in err  # the progress bar (forced on; else only large pulls on a tty)
    assert MiniStore.replay(str(local / "journal.jsonl")) == EXPECTED

    code, out, err = mini("pull", "--port", device.address, "data", tmp_path / "data")
    assert code == 0, out + err
    assert "state: OK" in out
    state, seq, snap_seq = StateManager.load(str(tmp_path / "data" / "state"), {"total": 0}, [Add])
    assert state == {"total": sum(range(20))} and seq == 20 and snap_seq > 0

    # the whole filesystem: the bricks in /lib came along too
    code, out, _ = mini("pull", "--port", device.address, ":/", tmp_path / "all")
    assert code == 0, out
    for name in BRICKS:
        with open(os.path.join(TOP, "shared", name), "rb") as a, open(tmp_path / "all" / "lib" / name, "rb") as b:
            assert a.read() == b.read()

    # a single file
    code, out, _ = mini("pull", "--port", device.address, ":logs/journal.jsonl", tmp_path / "one")
    assert code == 0 and os.listdir(tmp_path / "one") == ["journal.jsonl"]

    # a directory that is not empty: refused, unless --force
    code, _, err = mini("pull", "--port", device.address, ":logs", local)
    one_line_error(code, err, "not empty")
    (local / "stale.jsonl").write_bytes(b"old")
    code, out, err = mini("pull", "--port", device.address, ":logs", local, "--force")
    assert code == 0, err
    assert sorted(os.listdir(local)) == ["journal.jsonl"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".mini-pull-")]


def test_pull_reports_a_damaged_journal(device, tmp_path):
    mpremote(device.address, "exec", append_code("/bad/j.jsonl", 0, 5)
             + "with open('/bad/j.jsonl', 'ab') as f:\n    f.write(b'{\"seq\":6,\"rec\":')\n")
    code, out, err = mini("pull", "--port", device.address, ":bad", tmp_path / "bad")
    assert code == 1, out + err
    assert "torn" in out and "line 7" in out


def test_pull_errors(device, tmp_path):
    code, _, err = mini("pull", "--port", closed_port(), ":logs", tmp_path / "x")
    one_line_error(code, err, "no device there")
    code, _, err = mini("pull", "--port", "/dev/ttyNOPE9", ":logs", tmp_path / "x")
    one_line_error(code, err, "no such serial port")
    code, _, err = mini("pull", "--port", device.address, ":no/such/dir", tmp_path / "x")
    one_line_error(code, err, "no such file or directory on the device")
    code, _, err = mini("pull", "--port", device.address, ":logs", tmp_path / "no" / "parent")
    one_line_error(code, err, "no such directory")
    assert not os.path.exists(tmp_path / "x")


# ------------------------------------------------------------------ tail

def test_tail_prints_the_last_records(device):
    code, out, err = mini("tail", "--port", device.address, "logs/journal.jsonl", "-n", "3")
    assert code == 0, err
    assert out.splitlines() == ['{"seq":28,"rec":{"i":27,"tag":"reading"}}',
                                '{"seq":29,"rec":{"i":28,"tag":"reading"}}',
                                '{"seq":30,"rec":{"i":29,"tag":"reading"}}']
    code, out, _ = mini("tail", "--port", device.address, ":logs/journal.jsonl", "-n", "-1", "--raw")
    assert code == 0 and out.splitlines()[0] == '{"i":0,"tag":"reading"}' and len(out.splitlines()) == 30
    code, out, _ = mini("tail", "--port", device.address, "data/state", "-n", "2")  # a segment directory
    assert code == 0 and out.splitlines()[-1] == '{"seq":20,"rec":{"Add":{"n":19}}}'


def test_tail_follow_prints_records_as_they_are_appended(device):
    mpremote(device.address, "exec", append_code("/logs/follow.jsonl", 0, 2))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(TOP, "shared"), os.path.join(TOP, "cpython")]))
    mark = len(device.console())
    proc = subprocess.Popen([sys.executable, "-m", "minitools.cli", "tail", "--port", device.address,
                             "logs/follow.jsonl", "--follow", "-n", "0", "--interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, b"")), daemon=True)
    reader.start()
    try:
        # its first poll (each prints the prefix on the board's console) takes the starting
        # point: the 2 records already there are not printed (-n 0), the ones after are
        device.wait_console(device_cli.PREFIX.encode(), since=mark)
        mpremote(device.address, "exec", append_code("/logs/follow.jsonl", 2, 5))  # waits its turn on the line
        mpremote(device.address, "exec", append_code("/logs/follow.jsonl", 7, 3))
        deadline = time.monotonic() + 20
        while len(lines) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C stops it
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # SIGINT ignored (a background job of a shell): not the tool's fault
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    err = proc.stderr.read().decode()
    assert "Traceback" not in err, err
    got = [line.decode().strip() for line in lines]
    assert got == ['{"seq":%d,"rec":{"i":%d}}' % (i + 1, i) for i in range(2, 10)], (got, err)
    assert proc.returncode in (0, -signal.SIGKILL)


def test_tail_logic_on_a_local_journal(tmp_path, monkeypatch):
    """The device-side code of `mini tail` is plain Python: run it here to test the edge cases fast."""
    def local_eval(port, code, timeout=120):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(code, {})
        line = [x for x in out.getvalue().splitlines() if x.startswith(device_cli.PREFIX + " ")][0]
        return json.loads(line[len(device_cli.PREFIX) + 1:])

    monkeypatch.setattr(follower_module, "device_eval", local_eval)  # where Follower looks it up
    path = str(tmp_path / "j.jsonl")
    with MiniStore.open(path) as store:
        store.append("a")
        store.append("x" * 40000)  # longer than what one poll reads
        store.append("b")
    out, err = io.StringIO(), io.StringIO()
    follower = device_cli.Follower("local", path, -1, True, out, err)
    while follower.poll():
        pass
    assert out.getvalue().splitlines() == ['"a"', json.dumps("x" * 40000), '"b"'] and not err.getvalue()

    line = record_line(4, encode_json({"late": True}))
    with open(path, "ab") as f:
        f.write(line[:10])  # being written: not a record yet
    assert not follower.poll() and out.getvalue().count("\n") == 3
    with open(path, "ab") as f:
        f.write(line[10:])
    follower.poll()
    assert out.getvalue().splitlines()[-1] == '{"late":true}'

    out2 = io.StringIO()
    last2 = device_cli.Follower("local", path, 2, False, out2, err)  # -n 2: a window at the end
    last2.poll()
    assert out2.getvalue().splitlines() == ['{"seq":3,"rec":"b"}', '{"seq":4,"rec":{"late":true}}']

    # a segment directory: new segments are followed, compacted ones forgotten
    directory = str(tmp_path / "state")
    sm = StateManager.open(directory, initial={"total": 0}, mutators=[Add], snapshot_every=3)
    out3 = io.StringIO()
    follower = device_cli.Follower("local", directory, 0, False, out3, err)
    follower.poll()
    for i in range(10):
        sm.apply(Add(n=i))
        follower.poll()
    sm.close()
    seqs = [json.loads(x)["seq"] for x in out3.getvalue().splitlines()]
    # in order, none twice; a record appended and compacted into a snapshot within one
    # apply() (here seq 3: the first snapshot and its compaction) is never seen by a poll
    assert seqs == sorted(set(seqs)) and seqs[-1] == 10 and set(range(1, 11)) - set(seqs) <= {3, 6, 9}
    assert len(follower.offsets) <= 3 and not err.getvalue()


def test_tail_errors(device):
    code, _, err = mini("tail", "--port", closed_port(), "logs/journal.jsonl")
    one_line_error(code, err, "no device there")
    code, _, err = mini("tail", "--port", device.address, "logs/missing.jsonl")
    one_line_error(code, err, "no such file or directory on the device")


# ------------------------------------------------------------------ image extract

@pytest.mark.parametrize("geometry", ["esp32", "rp2040"])
def test_image_extract_reads_what_the_board_wrote(tmp_path, geometry):
    board = VirtualBoard(tmp_path / ("%s.bin" % geometry), geometry)
    address = board.start("--preload", "--size-kb", "512")
    try:
        assert "made" in mpremote(address, "exec", MAKE)
    finally:
        board.stop(power_cut=True)  # the board is off (or does not boot): its flash is all we have
    out_dir = tmp_path / "recovered"
    code, out, err = mini("image", "extract", board.image, "--board", geometry, out_dir)
    assert code == 0, err
    assert "/logs/journal.jsonl" in out and "extracted" in out
    for name in BRICKS:
        with open(os.path.join(TOP, "shared", name), "rb") as a, open(out_dir / "lib" / name, "rb") as b:
            assert a.read() == b.read()
    assert MiniStore.replay(str(out_dir / "logs" / "journal.jsonl")) == EXPECTED
    code, out, _ = mini("verify", out_dir / "logs" / "journal.jsonl", out_dir / "data" / "state")
    assert code == 0, out
    state, seq, _ = StateManager.load(str(out_dir / "data" / "state"), {"total": 0}, [Add])
    assert state == {"total": sum(range(20))} and seq == 20


def _littlefs_image(blocks=16):
    from littlefs import LittleFS
    fs = LittleFS(block_size=4096, block_count=blocks, read_size=32, prog_size=32, lookahead_size=32)
    fs.makedirs("/logs", exist_ok=True)
    with fs.open("/logs/a.txt", "wb") as f:
        f.write(b"hello flash")
    return bytes(fs.context.buffer)


def test_image_extract_errors(tmp_path):
    code, _, err = mini("image", "extract", tmp_path / "none.bin", "--board", "esp32", tmp_path / "out")
    one_line_error(code, err, "no such file")
    small = tmp_path / "small.bin"
    small.write_bytes(b"\xff" * 1024)
    code, _, err = mini("image", "extract", small, "--board", "esp32", tmp_path / "out")
    one_line_error(code, err, "too small")
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(64 * 1024))
    code, _, err = mini("image", "extract", noise, "--board", "rp2040", tmp_path / "out")
    one_line_error(code, err, "no LittleFS")
    # a full-flash dump: the filesystem starts at 8 KiB; the error says where it is
    dump = tmp_path / "dump.bin"
    dump.write_bytes(b"\x00" * 8192 + _littlefs_image())
    code, _, err = mini("image", "extract", dump, "--board", "esp32", tmp_path / "out")
    one_line_error(code, err, "--offset 8192")
    code, out, err = mini("image", "extract", dump, "--board", "esp32", tmp_path / "out", "--offset", "0x2000")
    assert code == 0, err
    assert (tmp_path / "out" / "logs" / "a.txt").read_bytes() == b"hello flash"
    code, _, err = mini("image", "extract", dump, "--board", "esp32", tmp_path / "out", "--offset", "8192")
    one_line_error(code, err, "not empty")
    assert not os.path.exists(tmp_path / "none.bin")
