# Damage of any length is read in pieces (FORMAT.md 2.2): the reader never holds more
# than the longest intact line, and a writer never writes a line longer than MAX_LINE.
from support import scratch, raises, write_bytes, read_bytes
from ministore import (MiniStore, CorruptRecord, LongDamage, MAX_LINE, encode_json, header_line, read_line,
                       record_line)


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
    write_bytes(path, good + b"z" * 20000)  # torn tail: a long write with no newline
    with MiniStore.open(path) as store:
        assert store.seq == 1
        store.append(2)
    assert MiniStore.replay(path) == [1, 2]
    write_bytes(path, good + b"z" * 20000 + b"\n" + record_line(2, encode_json(2)))
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
