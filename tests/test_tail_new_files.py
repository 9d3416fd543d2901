# `mini tail --follow` when the journal's file comes and goes: a journal that appears
# after tail started is printed from its first record (the -n window is for what the
# first poll found: with -n 0, 5 then 3 records printed only the last 3); one removed and
# created again between polls is read again from its start, whatever its size (before,
# tail read on at the old byte offset: records skipped and a false "damaged region");
# one that shrank is read on from the last line it still holds as tail read it (the CRC of
# its bytes up to there, computed on the device), and every record after that is printed:
# before, all of it was printed again, and then only the seqs after the last one shown,
# which skipped the new records that took the seqs of lost ones, and every record of a
# journal removed and created again smaller (its header the same bytes). Where the board's
# file system has inodes (a host directory it mounts with VfsPosix), another inode is
# another file, read from its start. Each poll is the Follower's, as `mini tail --follow`
# makes it, over one mpremote connection to the virtual board.
import io
import json
import os

import pytest

from minitools.device_session import DeviceSession
from minitools.follower import Follower

from test_virtual_board import VirtualBoard, mpremote


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    board = VirtualBoard(tmp_path_factory.mktemp("tailfiles") / "flash.bin", "esp32")
    board.start("--preload", "--size-kb", "1024")
    try:
        yield board
    finally:
        board.stop(power_cut=True)


def write(board, path, values, fresh=False):
    code = "import os\ntry:\n    os.remove('%s')\nexcept OSError:\n    pass\n" % path if fresh else ""
    code += "from ministore import MiniStore\nwith MiniStore.open('%s') as s:\n    for i in %r:\n" \
            "        s.append({'i': i})\n" % (path, list(values))
    mpremote(board.address, "exec", code)


class Tail:
    def __init__(self, board, path, lines):
        self.board = board
        self.out, self.err = io.StringIO(), io.StringIO()
        self.follower = Follower(board.address, path, lines, False, self.out, self.err)
        self.taken = 0

    def poll(self):
        """One poll of `mini tail --follow`, and the polls at once after it while bytes
        wait; the records it printed, as (seq, record)."""
        with DeviceSession(self.board.address) as session:
            while self.follower.poll(session.eval):
                pass
        lines = self.out.getvalue().splitlines()
        new, self.taken = lines[self.taken:], len(lines)
        return [(r["seq"], r["rec"]) for r in map(json.loads, new)]


def records(values, first=1):
    return [(first + k, {"i": i}) for k, i in enumerate(values)]


@pytest.mark.parametrize("lines", [0, 2])
def test_a_journal_that_appears_after_tail_started_is_printed_from_its_first_record(board, lines):
    path = "/late%d.jsonl" % lines
    tail = Tail(board, path, lines)
    with pytest.raises(FileNotFoundError):
        tail.poll()
    write(board, path, range(5))
    assert tail.poll() == records(range(5))
    write(board, path, range(5, 8))
    assert tail.poll() == records(range(5, 8), 6)
    assert tail.err.getvalue() == ""


def test_the_segments_of_a_directory_that_appears_after_tail_started(board):
    tail = Tail(board, "/data/late", 0)
    with pytest.raises(FileNotFoundError):
        tail.poll()
    mpremote(board.address, "exec", """
from ministate import StateManager, Mutator
class Add(Mutator):
    def __init__(self, i):
        self.i = i
    def apply(self, state):
        state['total'] += self.i
sm = StateManager.open('/data/late', initial={'total': 0}, mutators=[Add])
for i in range(4):
    sm.apply(Add(i=i))
sm.close()
""")
    assert tail.poll() == [(i + 1, {"Add": {"i": i}}) for i in range(4)]


@pytest.mark.parametrize("new", [
    range(100, 140),                      # longer than the one tail read
    range(40, 60),                        # as long, byte for byte
    list(range(10, 16)) + list(range(70, 90)),  # its first lines the same (its first 256 bytes), then not
])
def test_a_journal_removed_and_created_again_is_read_from_its_start(board, new):
    path = "/re%d.jsonl" % new[-1]
    write(board, path, range(10, 30), fresh=True)
    tail = Tail(board, path, 0)
    assert tail.poll() == []
    write(board, path, new, fresh=True)
    assert tail.poll() == records(new)
    write(board, path, [7])
    assert tail.poll() == records([7], len(new) + 1)
    assert "damaged" not in tail.err.getvalue() and "is a new file" in tail.err.getvalue(), tail.err.getvalue()


def test_a_journal_that_shrank_is_printed_on_from_where_it_is_still_the_same(board):
    path = "/shrink.jsonl"
    write(board, path, range(20), fresh=True)
    tail = Tail(board, path, -1)
    assert tail.poll() == records(range(20))
    # its last 10 records cut (as a truncate would), then 3 appended: seqs 11..13 are new
    # records (not the ones printed before under those seqs), and so are 14..23 next
    mpremote(board.address, "exec", """
import os
with open('%s', 'rb') as f:
    lines = f.read().split(b'\\n')
os.remove('%s')
with open('%s', 'wb') as f:
    f.write(b'\\n'.join(lines[:11]) + b'\\n')
""" % (path, path, path))
    write(board, path, range(100, 103))
    assert tail.poll() == records(range(100, 103), 11)
    said = tail.err.getvalue()
    assert "shrank" in said and "up to seq 10" in said and "seq 11..20, printed before, are no longer in it" in said
    write(board, path, range(200, 210))
    assert tail.poll() == records(range(200, 210), 14)
    assert "damaged" not in tail.err.getvalue() and "new file" not in tail.err.getvalue(), tail.err.getvalue()


def test_a_journal_created_again_smaller_with_the_same_header_is_printed_from_its_start(board):
    # its first bytes, the header, are the same: it looked like the old journal cut short,
    # and its records 1..5 were not printed (not after seq 20)
    path = "/again.jsonl"
    write(board, path, range(20), fresh=True)
    tail = Tail(board, path, 3)
    assert tail.poll() == records(range(17, 20), 18)
    write(board, path, [], fresh=True)  # the header only
    assert tail.poll() == []
    write(board, path, range(50, 55))
    assert tail.poll() == records(range(50, 55))
    assert "up to its header" in tail.err.getvalue() and "damaged" not in tail.err.getvalue(), tail.err.getvalue()


@pytest.fixture(scope="module")
def host(board, tmp_path_factory):
    """A host directory the board mounts at /host (VfsPosix): a file system with inodes."""
    folder = tmp_path_factory.mktemp("tailhost")
    mpremote(board.address, "exec", "import os\nos.mount(os.VfsPosix(%r), '/host')\n" % str(folder))
    return folder


def test_another_inode_is_another_file_even_with_the_same_first_records(board, host):
    path = "/host/inode.jsonl"
    write(board, path, range(20), fresh=True)
    tail = Tail(board, path, -1)
    assert tail.poll() == records(range(20))
    # replaced (a new file renamed over it, as `mini repair` replaces a journal) by one that is
    # smaller, and byte for byte the old one's start: its records are new all the same
    write(board, path + ".new", range(3), fresh=True)
    os.replace(str(host / "inode.jsonl.new"), str(host / "inode.jsonl"))  # (os.rename on the board's VfsPosix does not)
    assert tail.poll() == records(range(3)), tail.err.getvalue()
    assert "is a new file (removed and created again: another inode)" in tail.err.getvalue(), tail.err.getvalue()


def test_a_torn_tail_cut_off_in_place_is_read_on_after_the_last_whole_record(board, host):
    # the same inode, cut in the middle of record 15 (as a power cut that loses what was not
    # synced): 1..14 are not printed again; the writer pads what is left of 15 and appends
    # 15..17, new records, all printed
    path = "/host/cut.jsonl"
    write(board, path, range(20), fresh=True)
    tail = Tail(board, path, -1)
    assert tail.poll() == records(range(20))
    with open(str(host / "cut.jsonl"), "rb") as f:
        lines = f.read().split(b"\n")
    os.truncate(str(host / "cut.jsonl"), len(b"\n".join(lines[:15])) + 1 + 9)
    write(board, path, range(300, 303))
    assert tail.poll() == records(range(300, 303), 15)
    said = tail.err.getvalue()
    assert "shrank" in said and "up to seq 14" in said and "new file" not in said and "damaged" not in said, said
    write(board, path, [7])
    assert tail.poll() == records([7], 18)
