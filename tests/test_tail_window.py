# `mini tail -n N` starts with exactly the last N records (fewer only when the journal
# holds fewer), whatever the records' sizes, batches and LittleFS block-end pads, for a
# journal file and for a state directory's segments; then it prints the new ones, each
# once. A window guessed from N alone (2048 + 512*N bytes, and only its first 16 KiB
# trimmed to N) printed 1 record for -n 3 of 1.5 KB records, 250 for -n 100 of small ones.
# The oracle is `-n -1` (the whole journal, read from its start): -n N must be its last N.
# A window that starts inside an atomic batch still shows N records, and says on stderr
# which batch they end and how many of its records are not shown.
import io
import json

import pytest

from minitools.device_session import DeviceSession
from minitools.follower import Follower

from test_virtual_board import VirtualBoard, add_state, mini, mpremote

MAKE = add_state() + """
import os
from ministore import MiniStore
with MiniStore.open('/big.jsonl') as s:
    for i in range(12):
        s.append({'i': i, 'blob': 'x' * (1500 + 97 * i)})
with MiniStore.open('/small.jsonl') as s:
    for i in range(600):
        s.append({'i': i})
with MiniStore.open('/batch.jsonl') as s:
    for k in range(5):
        s.append_many([{'i': i} for i in range(k * 100, k * 100 + 100)])
pads = sum(1 for line in open('/big.jsonl') if line.startswith('{"pad"'))
print('pads', pads, 'segments', len([n for n in os.listdir('/data/state') if n.startswith('journal-')]))
"""


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    board = VirtualBoard(tmp_path_factory.mktemp("tailwindow") / "flash.bin", "esp32")
    board.start("--preload", "--size-kb", "1024")
    try:
        made = mpremote(board.address, "exec", MAKE).split()
        # what the window must get past: block-end pads between the big records, and a
        # state directory whose last 10 records span more than its newest segment
        assert int(made[1]) >= 3 and int(made[3]) >= 2, made
        yield board
    finally:
        board.stop(power_cut=True)


def seqs(address, path, n):
    code, out, err = mini("tail", "--port", address, path, "-n", str(n))
    assert code == 0 and "Traceback" not in err, err
    return [json.loads(line)["seq"] for line in out.splitlines()]


@pytest.mark.parametrize("path, counts", [
    ("/big.jsonl", (1, 3, 10, 12, 40)),
    ("/small.jsonl", (1, 10, 100, 250)),
    ("/batch.jsonl", (1, 5, 150)),
    ("/data/state", (1, 4, 5, 10, 30)),
])
def test_tail_n_prints_exactly_the_last_n_records(board, path, counts):
    everything = seqs(board.address, path, -1)
    assert everything == list(range(everything[0], everything[-1] + 1)), everything
    for n in counts:
        assert seqs(board.address, path, n) == everything[-n:], (path, n)
    assert seqs(board.address, path, 0) == []


def test_a_window_that_starts_inside_an_atomic_batch_says_so(board):
    """-n N shows exactly N records, as tail -n does, but never the end of a batch as if it were
    all of it: stderr names the batch and how many of its records are not shown. Before,
    -n 5 of /batch.jsonl (5 batches of 100) showed seq 496..500 and said nothing."""
    for n, said in ((5, "the first 5 records shown (seq 496..500) are the end of an atomic batch of 100 "
                        "(seq 401..500): its first 95 are not shown (-n 5)"),
                    (150, "the first 50 records shown (seq 351..400) are the end of an atomic batch of 100 "
                          "(seq 301..400): its first 50 are not shown (-n 150)"),
                    (100, None), (200, None), (500, None), (600, None)):
        code, out, err = mini("tail", "--port", board.address, "/batch.jsonl", "-n", str(n))
        assert code == 0, err
        assert [json.loads(line)["seq"] for line in out.splitlines()] == list(range(max(1, 501 - n), 501))
        if said is None:
            assert err == "", (n, err)  # whole batches: nothing to say
        else:
            assert err == "mini tail: /batch.jsonl: %s\n" % said, (n, err)
    code, out, err = mini("tail", "--port", board.address, "/small.jsonl", "-n", "7")  # no batches
    assert code == 0 and len(out.splitlines()) == 7 and err == "", err


def follow(address, follower):
    """One poll of `mini tail --follow`, and the polls at once after it while bytes wait."""
    with DeviceSession(address) as session:
        while follower.poll(session.eval):
            pass


def test_tail_n_then_only_the_new_records(board):
    """The window's bytes beyond what one exchange reads are not printed by the next polls."""
    mpremote(board.address, "exec", "from ministore import MiniStore\nwith MiniStore.open('/grow.jsonl') as s:\n"
                                    "    for i in range(600):\n        s.append({'i': i})\n")
    out, err = io.StringIO(), io.StringIO()
    follower = Follower(board.address, "/grow.jsonl", 100, False, out, err)
    follow(board.address, follower)
    follow(board.address, follower)  # nothing new
    assert [json.loads(line)["rec"]["i"] for line in out.getvalue().splitlines()] == list(range(500, 600))
    mpremote(board.address, "exec", "from ministore import MiniStore\nwith MiniStore.open('/grow.jsonl') as s:\n"
                                    "    for i in range(600, 603):\n        s.append({'i': i})\n")
    follow(board.address, follower)
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["seq"], r["rec"]["i"]) for r in got[100:]] == [(601, 600), (602, 601), (603, 602)]
    assert err.getvalue() == ""
