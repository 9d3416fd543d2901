# `mini ingest`'s database side (minitools.ingest.Store) without a broker: what it stores,
# drops as a duplicate, keeps as a conflict, or rejects, in one transaction per batch.
import json
import os
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(TOP, "shared"), os.path.join(TOP, "cpython")]
from minitools import ingest  # noqa: E402


def batch(ids_messages, inc="abc", device="dev1", n=0):
    return ("mini/%s/up" % device, json.dumps({"v": 1, "d": device, "i": inc, "n": n,
                                               "m": [[mid, m] for mid, m in ids_messages]}).encode())


def test_an_id_stored_before_with_another_message_is_kept_as_a_conflict_not_dropped(tmp_path):
    # A device whose queue starts again under the same incarnation (its flash region
    # erased, forward.jsonl kept) sends new messages under ids already stored: the key
    # dropped them as duplicates, and the device, acked, deleted them.
    db = ingest.open_db(str(tmp_path / "r.db"))
    store = ingest.Store(db, "mini", 1 << 20)
    assert store.write([batch([(1, {"boot": 1}), (2, {"boot": 1})])]) == [("dev1", "abc", [1, 2])]
    acks = store.write([batch([(1, {"boot": 1}), (2, {"boot": 2}), (3, {"boot": 2})])])
    assert acks == [("dev1", "abc", [1, 2, 3])]
    assert store.stored == 3 and store.duplicates == 1 and store.conflicts == 1
    rows = db.execute("SELECT id, payload, times FROM conflicts").fetchall()
    assert rows == [(2, '{"boot":2}', 1)]
    store.write([batch([(2, {"boot": 2})])])  # its resend: counted, not a second row
    assert db.execute("SELECT id, times FROM conflicts").fetchall() == [(2, 2)]
    assert db.execute("SELECT duplicates FROM incarnations").fetchone()[0] == 1
    result = ingest.stats(db)
    assert result["devices"][0]["conflicts"] == 1


def test_a_hostile_message_is_rejected_and_the_good_ones_in_its_transaction_are_stored(tmp_path):
    db = ingest.open_db(str(tmp_path / "r.db"))
    store = ingest.Store(db, "mini", 1 << 20)
    good = batch([(1, {"t": 1})], device="good")
    hostile = [batch([(2 ** 63, 1)]), batch([(1, 1)], n=2 ** 63), batch([(1, "\ud800")]),
               batch([(1, 1)], inc="\udc00"),
               (batch([(1, {"t": 1})])[0], batch([(1, {"t": 1})])[1].replace(b'"t": 1', b'"t": 1e400'))]
    acks = store.write(hostile + [good])
    assert acks == [("good", "abc", [1])] and store.rejected == 5 and store.stored == 1
    assert db.execute("SELECT device, payload FROM messages").fetchall() == [("good", '{"t":1}')]
    assert db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0] == 5
