# `mini tail` on what is not a journal, as `mini cat` does: a file that is not a
# ministore journal is one line on stderr and exit 2, --follow or not, even when tail
# reads it from the middle (its header line is checked all the same); a directory with no
# journal segments is exit 2, and with --follow tail says once that it waits, then prints
# the journal's records from the first when it appears. Before: exit 0, often silent, and
# --follow waited forever without a word.
import time

import pytest

from test_virtual_board import BackgroundTail, VirtualBoard, add_state, mini, mpremote

MAKE = add_state() + """
import os
with open('/notes.csv', 'w') as f:
    f.write('a,b\\n1,2\\n')
with open('/big.csv', 'w') as f:
    for i in range(2000):
        f.write('%d,%d,reading\\n' % (i, i * i))
os.mkdir('/empty')
print('snap', [n for n in os.listdir('/data/state') if n.startswith('snap-')][-1])
"""

ADD = add_state("/empty", 3, None)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    board = VirtualBoard(tmp_path_factory.mktemp("tailbad") / "flash.bin", "esp32")
    board.start("--preload", "--size-kb", "1024")
    try:
        board.snapshot = "/data/state/" + mpremote(board.address, "exec", MAKE).split()[-1]
        yield board
    finally:
        board.stop(power_cut=True)


def one_line_error(code, out, err, *words):
    assert code == 2 and out == "", (code, out, err)
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err


@pytest.mark.parametrize("follow", [[], ["--follow", "--interval", "0.2"]])
def test_tail_refuses_a_file_that_is_not_a_journal(board, follow):
    for path, n in (("/lib/ministore.py", "10"),  # longer than the window: read from its middle
                    ("/big.csv", "3"), ("/big.csv", "-1"), ("/notes.csv", "0"), (board.snapshot, "10")):
        code, out, err = mini("tail", "--port", board.address, path, "-n", n, *follow, timeout=20)
        err = "\n".join(line for line in err.splitlines() if "each poll stops" not in line)
        one_line_error(code, out, err, path, "not a ministore journal")


def test_tail_refuses_a_directory_without_segments(board):
    for path in ("/empty", "/data", "/lib"):
        code, out, err = mini("tail", "--port", board.address, path)
        one_line_error(code, out, err, path, "no journal segments")


def test_tail_follow_waits_for_the_segments_of_a_directory_and_prints_them_from_the_first(board):
    tail = BackgroundTail("--port", board.address, "/empty", "--follow", "-n", "0", "--interval", "0.2")
    lines, said = tail.lines, tail.said
    try:
        deadline = time.monotonic() + 15
        while b"waiting" not in b"".join(said) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a few polls more: said once
        mpremote(board.address, "exec", ADD)
        while len(lines) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        tail.stop()
    err = b"".join(said).decode()
    assert "Traceback" not in err, err
    assert err.count("waiting for the journal to appear") == 1 and "/empty holds no journal segments" in err, err
    assert [line.decode().strip() for line in lines] == ['{"seq":%d,"rec":{"Add":{"n":%d}}}' % (i + 1, i)
                                                         for i in range(3)], err


def test_tail_reads_a_journal_of_ours_whose_header_is_damaged(board):
    """Not refused: a sealed line after a damaged first line makes it a journal of ours
    (FORMAT.md 2.1, rule 4), from its start (-n -1) and from its middle (-n 2) alike."""
    mpremote(board.address, "exec", """
from ministore import MiniStore
with MiniStore.open('/hurt.jsonl') as s:
    for i in range(6):
        s.append({'i': i})
with open('/hurt.jsonl', 'rb') as f:
    data = f.read()
with open('/hurt.jsonl', 'wb') as f:
    f.write(b'X' * 100 + data[1:])
""")
    for n, first in (("-1", 1), ("2", 5)):
        code, out, err = mini("tail", "--port", board.address, "/hurt.jsonl", "-n", n)
        assert code == 0 and "not a ministore journal" not in err, err
        assert out.splitlines() == ['{"seq":%d,"rec":{"i":%d}}' % (seq, seq - 1) for seq in range(first, 7)], err
