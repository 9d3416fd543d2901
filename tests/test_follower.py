# mini tail reads with the core's one reader (issue 13): it shows a batch only once all
# of it has arrived, never a repeated or out-of-order seq, and says where damage is.
import io

from ministore import encode_json, header_line, record_line
from minitools.follower import Follower


def follower():
    err = io.StringIO()
    return Follower(None, "logs/j.jsonl", -1, False, out=io.StringIO(), err=err), err


def test_a_batch_shows_only_when_it_is_whole():
    f, err = follower()
    batch = [record_line(1, encode_json("a"), 3), record_line(2, encode_json("b")), record_line(3, encode_json("c"))]
    data = header_line(0) + batch[0] + batch[1]
    offset, records = f._lines("j", 0, data)
    assert records == [] and offset == len(data)  # two lines of a three-record batch: nothing yet
    offset, records = f._lines("j", offset, batch[2] + record_line(4, encode_json("d")))
    assert records == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
    assert err.getvalue() == ""


def test_a_repeated_seq_is_reported_not_shown():
    f, err = follower()
    data = header_line(0) + record_line(1, encode_json("a")) + record_line(1, encode_json("again"))
    data += record_line(2, encode_json("b"))
    _, records = f._lines("j", 0, data)
    assert records == [(1, "a"), (2, "b")]
    assert "goes backwards" in err.getvalue()


def test_a_window_from_the_middle_starts_at_the_first_record_it_sees():
    f, err = follower()
    lines = [record_line(seq, encode_json(seq)) for seq in range(5, 9)]
    offset, records = f._lines("j", 1000, b"".join(lines))
    assert records == [(5, 5), (6, 6), (7, 7), (8, 8)] and err.getvalue() == ""


def test_damage_is_said_and_tail_goes_on():
    f, err = follower()
    data = header_line(0) + record_line(1, encode_json("a")) + b"garbage\n" + record_line(2, encode_json("b"))
    _, records = f._lines("j", 0, data)
    assert records == [(1, "a"), (2, "b")]
    assert "damaged region" in err.getvalue() and "garbage" not in err.getvalue()
