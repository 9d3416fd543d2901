# `mini pull` of a file that changes on the device while it is copied. From a review: the
# pull compared only sizes, so a file rewritten in place at the same size during the copy
# was presented as a good copy, whatever mix of old and new bytes it held. Now the device
# gives the size and CRC-32 of each file once the copies are done; a copy that differs is
# made again (up to 3 times), and a file that keeps changing fails the pull (exit 2, one
# line naming it, nothing written).
#
# Real virtual board, real mpremote, real `mini pull` subprocesses. The file is on a host
# directory that the board mounts (os.VfsPosix, the unix port's own file system): a thread
# of this test rewrites it in place while the board reads it, as a program on a board with
# FAT would (LittleFS gives an open file the version it opened, so only a file copied
# after another changed could differ there).
import os
import threading
import time

import pytest

from test_virtual_board import VirtualBoard, mini, mpremote

SIZE = 48 * 1024  # about 3 s to copy at mpremote's 256 bytes per exchange


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    host = tmp_path_factory.mktemp("pullhost")
    vb = VirtualBoard(tmp_path_factory.mktemp("pullchanging") / "flash.bin", "esp32")
    vb.start("--preload", "--size-kb", "512")
    try:
        mpremote(vb.address, "exec", "import os\nos.mount(os.VfsPosix(%r), '/host')\n" % str(host))
        vb.host = host
        yield vb
    finally:
        vb.stop(power_cut=True)


def content(fill):
    return bytes([fill]) * SIZE


class Rewriter(threading.Thread):
    """Rewrites `path` in place (same size, another byte each time) until stop, or until
    `until()` is true; then writes `last` once, if given."""

    def __init__(self, path, until=None, last=None):
        threading.Thread.__init__(self, daemon=True)
        self.path, self.until, self.last = path, until, last
        self.stopped = threading.Event()
        self.writes = 0

    def run(self):
        while not self.stopped.is_set() and not (self.until and self.until()):
            with open(self.path, "r+b") as f:
                f.write(content(ord("a") + self.writes % 2))
            self.writes += 1
            time.sleep(0.005)
        if self.last is not None:
            with open(self.path, "r+b") as f:
                f.write(self.last)

    def stop(self):
        self.stopped.set()
        self.join(timeout=10)


def copied(parent, name):
    """Whether a pull's temporary copy of `name` under parent is complete (mpremote writes it at once)."""
    for entry in os.listdir(str(parent)):
        path = os.path.join(str(parent), entry, name)
        if entry.startswith(".mini-pull-") and os.path.isfile(path) and os.path.getsize(path) == SIZE:
            return True
    return False


def test_a_file_rewritten_in_place_all_the_time_fails_the_pull(board, tmp_path):
    folder = board.host / "busy"
    folder.mkdir()
    (folder / "data.bin").write_bytes(content(ord("a")))
    (folder / "quiet.txt").write_bytes(b"unchanged\n")
    rewriter = Rewriter(str(folder / "data.bin"))
    rewriter.start()
    try:
        code, out, err = mini("pull", "--port", board.address, ":/host/busy", tmp_path / "copy")
    finally:
        rewriter.stop()
    assert rewriter.writes > 100, rewriter.writes  # it was rewritten while it was copied
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1, err
    assert "data.bin changed on the device while it was copied" in err and "quiet.txt" not in err, err
    assert not (tmp_path / "copy").exists() and not [n for n in os.listdir(str(tmp_path)) if n.startswith(".mini")]

    code, out, err = mini("pull", "--port", board.address, ":/host/busy", tmp_path / "copy")
    assert code == 0, out + err
    assert (tmp_path / "copy" / "data.bin").read_bytes() == (folder / "data.bin").read_bytes()
    assert (tmp_path / "copy" / "quiet.txt").read_bytes() == b"unchanged\n"


def test_a_file_that_changed_during_its_copy_is_copied_again(board, tmp_path):
    """Rewritten until the first copy is complete, then once more (to 'c' bytes) and no more:
    the copy made first is of no version the device holds now, the second is the file."""
    folder = board.host / "once"
    folder.mkdir()
    (folder / "data.bin").write_bytes(content(ord("a")))
    rewriter = Rewriter(str(folder / "data.bin"), until=lambda: copied(tmp_path, "data.bin"), last=content(ord("c")))
    rewriter.start()
    try:
        code, out, err = mini("pull", "--port", board.address, ":/host/once", tmp_path / "copy")
    finally:
        rewriter.stop()
    assert rewriter.writes > 100, rewriter.writes
    assert code == 0, out + err
    assert (tmp_path / "copy" / "data.bin").read_bytes() == content(ord("c"))


def test_a_file_that_grew_after_the_listing_is_pulled_as_it_is_then(board, tmp_path):
    """Appended to once the pull listed it (its temporary directory is there), before its copy
    starts (mpremote takes longer to start): the copy is of the file as it is then, as the
    device's CRC says. Before, the size in the listing failed it ("copied N bytes of M")."""
    folder = board.host / "grows"
    folder.mkdir()
    (folder / "log.txt").write_bytes(b"first\n")

    def listed():
        return any(n.startswith(".mini-pull-") for n in os.listdir(str(tmp_path)))

    def append():
        deadline = time.monotonic() + 60
        while not listed() and time.monotonic() < deadline:
            time.sleep(0.002)
        with open(str(folder / "log.txt"), "ab") as f:
            f.write(b"second\n")

    appender = threading.Thread(target=append, daemon=True)
    appender.start()
    code, out, err = mini("pull", "--port", board.address, ":/host/grows", tmp_path / "copy")
    appender.join(timeout=10)
    assert code == 0, out + err
    assert (tmp_path / "copy" / "log.txt").read_bytes() == b"first\nsecond\n"


# A device app that appends to its journal all the time (reading a running device's logs).
# A file that only grew since it was copied (the device's first len(copy) bytes are the
# copy) is an earlier version of it: the copy is kept, a ministore journal's cut back to its
# last whole line, and stderr says so. A file that is not a journal is kept byte for byte.

def sealed(body):
    """A sealed line (FORMAT.md 1) of the JSON object text body, without its closing brace."""
    import binascii
    return body + b',"crc":"%08x"}\n' % binascii.crc32(body)


def journal_header():
    return sealed(b'{"format":"ministore","version":1,"base_seq":0')


def journal_record(seq, batch=None):
    return sealed(b'{"seq":%d,%s"rec":{"n":%d,"pad":"%s"}' % (seq, b'"batch":%d,' % batch if batch else b"", seq,
                                                             b"x" * 60))


def wait_for_copy(parent, name, size, timeout=60):
    """Until a pull's temporary copy of `name` under parent holds `size` bytes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir(str(parent)):
            path = os.path.join(str(parent), entry, name)
            if entry.startswith(".mini-pull-") and os.path.isfile(path) and os.path.getsize(path) == size:
                return True
        time.sleep(0.002)
    return False


DEVICE_APPENDER = """
import _thread, time, ministore
_mini_app = {'run': True, 'done': False, 'records': 0}
def _mini_appender():
    s = ministore.MiniStore.open(%r)
    try:
        while _mini_app['run']:
            s.append({'n': s.seq + 1, 'pad': 'y' * 60})
            _mini_app['records'] += 1
            time.sleep_ms(20)
    finally:
        s.close()
        _mini_app['done'] = True
_thread.start_new_thread(_mini_appender, ())
"""

DEVICE_APPENDER_STOP = """
import time
_mini_app['run'] = False
for _ in range(500):
    if _mini_app['done']:
        break
    time.sleep_ms(10)
print('appender', _mini_app['done'], _mini_app['records'])
"""


def test_a_journal_a_device_program_appends_to_all_the_time_is_pulled_up_to_a_whole_line(board, tmp_path):
    """A thread on the board appends records through the real ministore brick every 20 ms, all
    through the pull (about 3 s of copying): the pull succeeds, the copy is the device's
    journal up to a whole line, verifies, and stderr says how much was left on the device.
    (Slower than the link copies: mpremote reads a file to its end, and would chase one that
    grows faster for ever.)"""
    from ministore import MiniStore
    folder = board.host / "live"
    folder.mkdir()
    store = MiniStore.open(str(folder / "app.jsonl"))
    while os.path.getsize(str(folder / "app.jsonl")) < SIZE:
        store.append({"n": store.seq + 1, "pad": "x" * 60})
    first = store.seq
    store.close()
    mpremote(board.address, "exec", DEVICE_APPENDER % "/host/live/app.jsonl")
    try:
        time.sleep(0.3)
        grown = os.path.getsize(str(folder / "app.jsonl"))
        assert grown > SIZE, grown  # the device program is appending
        code, out, err = mini("pull", "--port", board.address, ":/host/live", tmp_path / "copy")
    finally:
        stopped = mpremote(board.address, "exec", DEVICE_APPENDER_STOP)
    assert "appender True" in stopped, stopped
    assert code == 0, out + err
    pulled = (tmp_path / "copy" / "app.jsonl").read_bytes()
    device = (folder / "app.jsonl").read_bytes()
    assert len(device) > len(pulled) > grown and device.startswith(pulled) and pulled.endswith(b"\n")
    said = [line for line in err.splitlines() if "was being appended" in line]
    assert len(said) == 1 and said[0].startswith(
        "mini pull: /host/live/app.jsonl was being appended: pulled its first %d bytes (up to its last whole "
        "line); the device holds " % len(pulled)), err
    assert len(pulled) < int(said[0].rsplit(" ", 1)[1]) <= len(device), (said, len(device))
    assert "app.jsonl: OK" in out, out
    code, out, err = mini("verify", tmp_path / "copy" / "app.jsonl")
    assert code == 0 and "OK" in out, out + err
    code, out, err = mini("cat", "--raw", tmp_path / "copy" / "app.jsonl")
    records = [line for line in out.splitlines() if line]
    assert code == 0 and len(records) > first, (code, len(records), first, err)


class LineWriter(threading.Thread):
    """Appends the first `at` bytes of `line` (its half by default) and waits until the pull's
    copy holds what the file holds then (a line cut by the append); then the rest of `line`
    and `more` lines, one every 5 ms, until stop. A device program writing a line in two
    writes, as a board's does when its line is longer than a write."""

    def __init__(self, path, parent, line, more, at=None):
        threading.Thread.__init__(self, daemon=True)
        self.path, self.parent, self.line, self.more = path, parent, line, more
        self.at = len(line) // 2 if at is None else at
        self.stopped = threading.Event()
        self.caught = False

    def run(self):
        with open(self.path, "ab") as f:
            f.write(self.line[:self.at])
        self.caught = wait_for_copy(self.parent, os.path.basename(self.path), os.path.getsize(self.path))
        with open(self.path, "ab") as f:
            f.write(self.line[self.at:])
        n = 0
        while not self.stopped.is_set():
            with open(self.path, "ab") as f:
                f.write(self.more(n))
            n += 1
            time.sleep(0.005)

    def stop(self):
        self.stopped.set()
        self.join(timeout=10)


def test_a_journal_cut_mid_line_by_an_append_is_pulled_up_to_its_last_whole_line(board, tmp_path):
    folder = board.host / "midline"
    folder.mkdir()
    whole = journal_header() + b"".join(journal_record(seq) for seq in range(1, 400))
    (folder / "j.jsonl").write_bytes(whole)
    (folder / "quiet.txt").write_bytes(b"unchanged\n")
    writer = LineWriter(str(folder / "j.jsonl"), tmp_path, journal_record(400), lambda n: journal_record(401 + n))
    writer.start()
    try:
        code, out, err = mini("pull", "--port", board.address, ":/host/midline", tmp_path / "copy")
    finally:
        writer.stop()
    assert writer.caught  # the copy was made while the file ended in half a line
    assert code == 0, out + err
    assert (tmp_path / "copy" / "j.jsonl").read_bytes() == whole  # the half line cut off
    assert (tmp_path / "copy" / "quiet.txt").read_bytes() == b"unchanged\n"
    device = (folder / "j.jsonl").stat().st_size
    assert ("mini pull: /host/midline/j.jsonl was being appended: pulled its first %d bytes (up to its last whole "
            "line); the device holds " % len(whole)) in err, err
    assert "quiet.txt" not in err, err
    held = int(err.split("the device holds ")[1].split()[0])
    assert len(whole) + len(journal_record(400)) <= held <= device, (held, device)
    code, out, err = mini("verify", tmp_path / "copy")
    assert code == 0 and "j.jsonl: OK" in out, out + err


def test_a_journal_copied_in_the_middle_of_an_atomic_batch_is_pulled_up_to_its_last_whole_batch(board, tmp_path):
    """The copy holds the first line of a batch of 2, whole, and the device the second after
    it: a batch is whole or absent (FORMAT.md 2.2), so the copy ends before it, and verifies
    clean (not as a torn tail)."""
    folder = board.host / "batch"
    folder.mkdir()
    whole = journal_header() + b"".join(journal_record(seq) for seq in range(1, 400))
    (folder / "j.jsonl").write_bytes(whole)
    batch = journal_record(400, batch=2) + journal_record(401)
    writer = LineWriter(str(folder / "j.jsonl"), tmp_path, batch, lambda n: journal_record(402 + n),
                        at=batch.index(b"\n") + 5)  # its first line and 4 bytes of the second
    writer.start()
    try:
        code, out, err = mini("pull", "--port", board.address, ":/host/batch", tmp_path / "copy")
    finally:
        writer.stop()
    assert writer.caught
    assert code == 0, out + err
    assert (tmp_path / "copy" / "j.jsonl").read_bytes() == whole
    assert ("mini pull: /host/batch/j.jsonl was being appended: pulled its first %d bytes (up to its last whole "
            "batch); the device holds " % len(whole)) in err, err
    assert "j.jsonl: OK" in out, out


def test_a_growing_file_that_is_not_a_journal_is_pulled_byte_for_byte_as_it_was(board, tmp_path):
    """Lines too, even a first line that looks like a header, but not a ministore one: the copy
    keeps its half line (a file not known to be a journal is never changed)."""
    folder = board.host / "foreign"
    folder.mkdir()
    other = b'{"format":"other","version":1,"crc":"00000000"}\n' + b"".join(b"line %d\n" % n for n in range(5000))
    (folder / "log.txt").write_bytes(other)
    cut = b"line 5000: the one cut in two\n"
    writer = LineWriter(str(folder / "log.txt"), tmp_path, cut, lambda n: b"line %d\n" % (5001 + n))
    writer.start()
    try:
        code, out, err = mini("pull", "--port", board.address, ":/host/foreign", tmp_path / "copy")
    finally:
        writer.stop()
    assert writer.caught
    assert code == 0, out + err
    pulled = (tmp_path / "copy" / "log.txt").read_bytes()
    assert pulled == other + cut[:len(cut) // 2], pulled[-40:]  # byte for byte, the half line too
    assert ("mini pull: /host/foreign/log.txt was being appended: pulled its first %d bytes as they were (not a "
            "ministore journal, so not cut to a whole line); the device holds " % len(pulled)) in err, err


def test_a_growing_file_beside_files_created_meanwhile_is_copied_again_then_fails(board, tmp_path):
    """A prefix is kept only when the device holds the names the pull listed: here a file is
    created beside the journal every 40 ms, so each of the 3 copies is refused as before."""
    folder = board.host / "moving"
    folder.mkdir()
    (folder / "j.jsonl").write_bytes(journal_header() + b"".join(journal_record(seq) for seq in range(1, 400)))
    stop = threading.Event()

    def churn():
        seq = 400
        while not stop.is_set():
            with open(str(folder / "j.jsonl"), "ab") as f:
                f.write(journal_record(seq))
            seq += 1
            if seq % 2 == 0:
                (folder / ("new-%d.txt" % seq)).write_bytes(b"new\n")
            time.sleep(0.02)

    churner = threading.Thread(target=churn, daemon=True)
    churner.start()
    try:
        code, out, err = mini("pull", "--port", board.address, ":/host/moving", tmp_path / "copy")
    finally:
        stop.set()
        churner.join(timeout=10)
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1, err
    assert ("j.jsonl changed on the device while it was copied, 3 times in a row (it grew, but files were created "
            "or removed in /host/moving meanwhile)") in err, err
    assert not (tmp_path / "copy").exists() and not [n for n in os.listdir(str(tmp_path)) if n.startswith(".mini")]
