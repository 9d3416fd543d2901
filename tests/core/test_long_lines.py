# Damage of any length is read in pieces (FORMAT.md 2.2): the reader never holds more
# than the longest intact line, and a writer never writes a line longer than MAX_LINE.
from support import scratch, raises, write_bytes, read_bytes, size
import minishim
from ministore import (MiniStore, CorruptRecord, MAX_LINE, PAD, SYNC_POINT, encode_json, header_line, pad_line, parse_line,
                       read_line, record_line, seal)
from minidamage import LongDamage, LongPad


def _file(data):
    path = scratch() + "/lines.bin"
    write_bytes(path, data)
    return path


def test_a_sealed_line_longer_than_the_budget_is_read_whole():
    line = record_line(1, encode_json("x" * 500))
    with open(_file(line + b"next\n"), "rb") as f:
        assert read_line(f, 64) == line
        assert read_line(f, 64) == b"next\n"


def test_a_damaged_long_line_is_only_measured():
    line = record_line(1, encode_json("x" * 500))
    bad = line.replace(b"xxxx", b"xxxy", 1)
    with open(_file(bad + b"next\n"), "rb") as f:
        got = read_line(f, 64)
        assert isinstance(got, LongDamage) and len(got) == len(bad) and got.reason == "crc mismatch"
        assert read_line(f, 64) == b"next\n"
    with open(_file(b"y" * 1000), "rb") as f:
        got = read_line(f, 64)
        assert len(got) == 1000 and got.reason == "incomplete line (no newline)"
        assert read_line(f, 64) == b""


def test_a_long_torn_tail_is_cut_and_a_long_damaged_middle_is_corruption():
    path = scratch() + "/j.jsonl"
    with MiniStore.open(path) as store:
        store.append(1)
    good = read_bytes(path)
    _append_filler(path, b"z", 20000)  # torn tail: a long write with no newline
    with MiniStore.open(path) as store:
        assert store.seq == 1
        store.append(2)
    assert MiniStore.replay(path) == [1, 2]
    # Written in pieces: the test must not need 20 KB in one block of a board's heap.
    write_bytes(path, good)
    _append_filler(path, b"z", 20000)
    write_bytes(path, b"\n" + record_line(2, encode_json(2)), "ab")
    err = raises(CorruptRecord, MiniStore.replay, path)
    assert err.line == 3 and err.offset == len(good)


def test_a_record_longer_than_a_line_may_be_is_refused_before_writing():
    path = scratch() + "/j.jsonl"
    try:
        big = "x" * MAX_LINE
    except MemoryError:
        return  # a board's heap cannot even hold such a record
    with MiniStore.open(path) as store:
        err = raises(ValueError, store.append, big)
        assert "longer than a journal line may be" in str(err)
        assert store.seq == 0
    assert read_bytes(path) == header_line(0)


def test_a_long_pad_is_read_in_pieces_and_never_whole():
    # A pad is as long as the damage it covers: read whole, it would cost that much heap.
    plain = pad_line(5000, "torn tail")
    lost = pad_line(3000, "repair", (3, 7))
    with open(_file(plain + lost + b"next\n"), "rb") as f:
        got = read_line(f, 64)
        assert isinstance(got, LongPad) and len(got) == 5000
        assert parse_line(got) == (PAD, {"pad": 5000, "why": "torn tail"})
        got = read_line(f, 64)
        assert isinstance(got, LongPad) and len(got) == 3000
        assert parse_line(got) == (PAD, {"pad": 3000, "why": "repair", "lost": [3, 7]})
        assert read_line(f, 64) == b"next\n"


def test_a_long_sealed_line_that_only_looks_like_a_pad_is_read_whole():
    head = b'{"pad":600,"why":"x","fill":"'
    for line in (seal(head + b" " * 499 + b"a" + b" " * 50 + b'"'),  # not only spaces
                 seal(head + b" " * 550 + b'"' + b'," ":" "'),         # more fields after the fill
                 seal(b'{"pad":600,"seq":1,"fill":"' + b" " * 550 + b'"')):  # a record, for parse_line
        with open(_file(line + b"next\n"), "rb") as f:
            assert read_line(f, 64) == line
            assert read_line(f, 64) == b"next\n"


def _append_filler(path, byte, count):
    piece = byte * 4096  # in pieces: a board's heap could not hold the whole of it
    with open(path, "ab") as f:
        for _ in range(count // 4096):
            f.write(piece)
        f.write(piece[:count % 4096])


def test_a_torn_tail_of_200_kb_opens_and_reopens_and_damage_that_long_is_corruption():
    # Issue 14: run on the MCU build with a 128 KB heap by tests/test_mcu.py.
    path = scratch() + "/j.jsonl"
    with MiniStore.open(path) as store:
        for i in range(5):
            store.append({"i": i})
    good = size(path)
    write_bytes(path, b'{"seq":6,"rec":"', "ab")  # a 200 KB record the power cut tore
    _append_filler(path, b"a", 200 * 1024)
    with MiniStore.open(path) as store:
        assert store.seq == 5
        store.append({"after": "recovery"})
    with MiniStore.open(path) as store:  # the 200 KB pad is read in pieces too
        assert store.seq == 6
    assert MiniStore.replay(path) == [{"i": i} for i in range(5)] + [{"after": "recovery"}]
    middle = scratch() + "/m.jsonl"
    with MiniStore.open(middle) as store:
        for i in range(5):
            store.append({"i": i})
    _append_filler(middle, b"b", 300 * 1024)
    write_bytes(middle, b"\n" + record_line(6, encode_json(6)), "ab")
    err = raises(CorruptRecord, MiniStore.replay, middle)
    assert err.line == 7 and err.offset == good
    err = raises(CorruptRecord, MiniStore.open, middle)
    assert err.line == 7 and err.offset == good


def test_long_records_and_snapshots_are_written_as_the_same_bytes_in_pieces():
    # A record longer than 1 KB is written as its line's head, itself and its CRC
    # (record_pieces), so a board needs no block for a copy of it: the file is the same.
    # (Compared line by line: this module must pass on the 128 KB board too.)
    from ministore import record_pieces
    from minisnap import SnapStore
    big, small = encode_json("x" * 1500), encode_json([1])
    assert b"".join(record_pieces(7, big, 3)) == seal(b'{"seq":7,"batch":3,"rec":%s' % big)
    path = scratch() + "/j.jsonl"
    with MiniStore.open(path, sync=100) as store:  # a batch policy: no block-end pads on LittleFS
        store.append("x" * 1500)
        store.append_encoded([small, big, small])
        store.append_encoded([big], lead=[[small], [big, small]])
    want = [header_line(0), record_line(1, big), record_line(2, small, 3), record_line(3, big),
            record_line(4, small), record_line(5, small), record_line(6, big, 2), record_line(7, small),
            record_line(8, big)]
    if not minishim.littlefs_block(path):  # the "sync point" pad a sync=N writer starts with (FORMAT.md 2.3)
        want.insert(1, SYNC_POINT)
    with open(path, "rb") as f:
        for line in want:
            assert f.readline() == line
        assert f.read() == b""
    state = {"big": "y" * 1500, "n": 1}
    path = SnapStore(scratch() + "/snaps").create(state, 9)
    assert read_bytes(path) == seal(b'{"format":"minisnap","version":1,"seq":9,"state":%s' % encode_json(state))


def test_a_batch_longer_than_a_piece_is_the_same_bytes_and_joined_in_short_runs_on_micropython():
    # On MicroPython a batch of short lines is joined in runs of at most 1 KB (each its own
    # write), so a put_many or a checkpoint batch of a few KB needs no block that large of
    # a board's heap; CPython joins the whole batch. Either way the file is the same.
    import minishim
    from ministore import _joined, _PIECE
    lines = [record_line(i, encode_json({"i": i, "pad": "p" * 180}), 20 if i == 1 else 1) for i in range(1, 21)]
    out = _joined(lines)
    if minishim.MICROPYTHON:
        assert isinstance(out, list) and len(out) > 1
        assert max(len(piece) for piece in out) <= _PIECE
        assert b"".join(out) == b"".join(lines)
    else:
        assert out == b"".join(lines)
    big = encode_json("z" * 1500)
    mixed = _joined(lines[:8] + [[b"head", big, b"tail"]] + lines[8:])
    assert b"".join(mixed) == b"".join(lines[:8]) + b"head" + big + b"tail" + b"".join(lines[8:])
    assert big in mixed  # a long piece stands as it is
    path = scratch() + "/batch.jsonl"
    with MiniStore.open(path, sync=100) as store:
        store.append_many([{"i": i, "pad": "p" * 180} for i in range(1, 21)])
    with open(path, "rb") as f:
        assert f.readline() == header_line(0)
        if not minishim.littlefs_block(path):
            assert f.readline() == SYNC_POINT
        for line in lines:
            assert f.readline() == line
        assert f.read() == b""
    assert [r["i"] for r in MiniStore.replay(path)] == list(range(1, 21))
