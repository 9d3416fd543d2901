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
