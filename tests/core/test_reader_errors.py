# One short test per reason the journal reader gives (FORMAT.md 1 and 2.4), as
# LevelDB's log_test.cc has: each builds the smallest journal that shows it, on
# both runtimes, and checks the reason, the line and the offset.
from support import scratch, raises, write_bytes
from ministore import (MiniStore, JournalReader, CorruptRecord, FormatError, encode_json, header_line,
                       record_line, pad_line, seal)
from minisnap import read_snapshot, snapshot_bytes, SnapshotError

HEADER = header_line(0)


def journal(*lines):
    path = scratch() + "/j.jsonl"
    write_bytes(path, HEADER + b"".join(lines))
    return path


def rec(seq, value=1, batch=1):
    return record_line(seq, encode_json(value), batch)


def corrupt(path):
    """The CorruptRecord the reader raises, checked to be the same on the fast and slow paths."""
    err = raises(CorruptRecord, MiniStore.replay, path)
    slow = raises(CorruptRecord, lambda: list(JournalReader(path, fast=False)))
    assert str(slow) == str(err)
    return err


def torn(path):
    reader = MiniStore.stream(path)
    items = list(reader)
    assert reader.torn is not None
    return items, reader.torn


def with_crc_field(line, field):
    """`line` with its 8 CRC characters replaced by `field` (same value, other spelling)."""
    return line[:-11] + field + line[-3:]


def test_incomplete_line_at_the_end_is_a_torn_tail():
    items, tail = torn(journal(rec(1), rec(2)[:-1]))
    assert items == [(1, 1)] and tail.reason == "incomplete line (no newline)" and tail.line == 3


def test_line_has_no_crc_field():
    err = corrupt(journal(b'{"seq":1,"rec":1}\n', rec(1)))
    assert err.reason.startswith("line has no crc field") and err.line == 2 and err.offset == len(HEADER)


def test_crc_mismatch():
    bad = rec(1, 7).replace(b'"rec":7', b'"rec":8')
    err = corrupt(journal(bad, rec(2)))
    assert err.reason.startswith("crc mismatch") and err.line == 2


def test_crc_field_must_be_eight_lowercase_hex_digits():
    line = rec(1, "x")
    crc = line[-11:-3]
    value = int(crc, 16)
    for field in (crc.upper(), b" " + b"%x" % value, b"+" + b"%07x" % (value & 0xFFFFFFF),
                  crc[:1] + b"_" + crc[2:]):
        if field == crc or len(field) != 8:
            continue
        err = corrupt(journal(with_crc_field(line, field), rec(2)))
        assert err.reason.startswith("crc field is not 8 lowercase hex digits") or \
            err.reason.startswith("crc mismatch"), (field, err.reason)
    # Read as an int, " 1a4b49f" and "01a4b49f" are the same number: never accepted.
    small = None
    for n in range(1, 2000):  # a record whose CRC has a leading zero digit
        candidate = rec(1, n)
        if candidate[-11:-10] == b"0":
            small = candidate
            break
    assert small is not None
    spaced = with_crc_field(small, b" " + small[-10:-3])
    err = corrupt(journal(spaced, rec(2)))
    assert err.reason.startswith("crc field is not 8 lowercase hex digits")


def test_crc_matches_but_the_line_is_not_a_json_object():
    err = corrupt(journal(seal(b"[1,2"), rec(1)))
    assert "not JSON" in err.reason or "not a JSON object" in err.reason
    # Sealed, yet no JSON. (MicroPython's parser is lenient: it reads some invalid JSON,
    # such as '"x":,' or a short \u escape, so this uses a break that both refuse.)
    err = corrupt(journal(seal(b'{"seq":1,"rec":1,"x":['), rec(1)))
    assert "crc matches but the line is not JSON" in err.reason and err.line == 2


def test_line_is_neither_a_record_a_pad_nor_a_header():
    err = corrupt(journal(seal(b'{"hello":1'), rec(1)))
    assert err.reason == "line is neither a record, a pad nor a header"


def test_a_sealed_foreign_line_is_corruption_even_at_the_end():
    err = corrupt(journal(rec(1), seal(b'{"hello":1')))
    assert err.line == 3


def test_second_header():
    err = corrupt(journal(rec(1), header_line(1)))
    assert err.reason == "second header" and err.line == 3


def test_sequence_gap():
    err = corrupt(journal(rec(1), rec(3)))
    assert err.reason.startswith("sequence gap: expected seq 2") and err.line == 3


def test_repeated_seq_is_a_gap():
    err = corrupt(journal(rec(1), rec(1)))
    assert "expected seq 2, found 1" in err.reason


def test_record_line_of_the_wrong_shape():
    for body in (b'{"seq":true,"rec":1', b'{"seq":1.0,"rec":1', b'{"seq":1', b'{"seq":1,"batch":0,"rec":1'):
        err = corrupt(journal(seal(body), rec(1)))
        assert err.reason == "record line of the wrong shape", (body, err.reason)


def test_batch_starts_inside_a_batch():
    err = corrupt(journal(rec(1, 1, 3), rec(2, 1, 2), rec(3)))
    assert err.reason == "batch starts inside a batch" and err.line == 3


def test_incomplete_batch_is_a_torn_tail():
    items, tail = torn(journal(rec(1), rec(2, 1, 3), rec(3)))
    assert items == [(1, 1)] and tail.reason.startswith("incomplete batch at seq 2") and tail.line == 3


def test_pad_with_a_bad_lost_range():
    for lost in ((5, 6), (2, 1)):
        err = corrupt(journal(rec(1), pad_line(60, "repaired", lost), rec(7)))
        assert err.reason.startswith("pad with a bad lost range"), err.reason


def test_damaged_line_with_intact_lines_after_it():
    err = corrupt(journal(rec(1), b"garbage\n", rec(2)))
    assert err.reason.endswith("(intact lines follow)") and err.line == 3


def test_damaged_header_with_more_lines_after_it():
    path = scratch() + "/j.jsonl"
    damaged = HEADER.replace(b'"base_seq":0', b'"base_seq":1')  # ours (it parses, names us), CRC fails
    write_bytes(path, damaged + b"garbage\n")
    err = raises(CorruptRecord, MiniStore.replay, path)
    assert err.reason == "damaged header with more lines after it" and err.line == 1


def test_not_a_ministore_journal():
    path = scratch() + "/j.jsonl"
    write_bytes(path, b"a,b\n")
    assert "not a ministore journal" in str(raises(FormatError, MiniStore.replay, path))


def test_a_snapshot_whose_seq_is_not_an_int_is_refused_on_both_runtimes():
    path = scratch() + "/snap-00000001.json"
    for seq in (b"true", b"1.0", b'"1"', b"-1"):
        write_bytes(path, seal(b'{"format":"minisnap","version":1,"seq":%s,"state":{}' % seq))
        raises(FormatError, read_snapshot, path)
    write_bytes(path, snapshot_bytes({}, 3)[:-5])
    raises(SnapshotError, read_snapshot, path)
