# An error in the middle of a queue call, after its event is written (or kept for the
# next write) and before the queue's RAM follows it: a MemoryError on a board's small
# heap, Ctrl-C, a full disk during a compaction. The queue must close itself (only a
# reopen is trusted, as after a failed write), not go on answering from a RAM that
# disagrees with its journal: a retried ack or purge was written twice and the journal
# no longer opened (QueueCorrupt), and a get that failed after its get was written
# counted a delivery the app never received.
from support import scratch, raises, fails_once
import minishim
from ministore import ClosedError
from miniqueue import MiniQueue


def _queue(**options):
    path = scratch() + "/q"
    return path, MiniQueue.open(path, **options)


def _closed(q):
    assert q.closed
    raises(ClosedError, q.put, "after")


def test_an_ack_interrupted_before_memory_follows_closes_the_queue():
    path, q = _queue(durability="all")
    q.put("a")
    mid, _ = q.get()
    fails_once(q._ix, "remove", KeyboardInterrupt())
    raises(KeyboardInterrupt, q.ack, mid)  # its ack is durable, the message still in flight in RAM
    _closed(q)  # before: open, and the retried ack was written twice: the journal did not open
    with MiniQueue.open(path) as again:
        assert again.get() is None and len(again) == 0


def test_a_get_that_fails_before_the_app_has_the_message_counts_no_delivery():
    path, q = _queue(durability="all", max_deliveries=1)
    q.put({"k": "a"})
    fails_once(minishim, "loads", MemoryError("test: no heap to parse the message"))
    raises(MemoryError, q.get)
    _closed(q)
    with MiniQueue.open(path, max_deliveries=1) as again:
        assert again.get() == (1, {"k": "a"})  # before: its get was written, so a dead letter now
        assert again.dead() == []


def test_a_put_written_but_not_in_memory_closes_the_queue():
    path, q = _queue()
    q.put("a")
    fails_once(q._ix, "add", MemoryError("test: no heap for the index"))
    raises(MemoryError, q.put, "b")
    _closed(q)
    with MiniQueue.open(path) as again:  # the put raised: it may or may not be there, nothing else
        got = []
        item = again.get()
        while item is not None:
            got.append(item)
            item = again.get()
        assert got in ([(1, "a")], [(1, "a"), (2, "b")]), got


def test_a_purge_written_but_not_all_in_memory_closes_the_queue():
    path, q = _queue(max_deliveries=1)
    for i in range(3):
        q.put(i)
        mid, _ = q.get()
        q.nack(mid)
    assert q.get() is None and len(q.dead()) == 3  # each moved to the dead letters on its next get
    fails_once(q._ix, "remove", MemoryError("test"))
    raises(MemoryError, q.purge_dead)
    _closed(q)
    with MiniQueue.open(path, max_deliveries=1) as again:  # before: a second purge made this QueueCorrupt
        assert again.purge_dead() in (0, 3)
        assert again.dead() == []


def test_a_compaction_that_fails_after_a_get_closes_the_queue_and_still_delivers():
    # The get is written (durability="all") when its compaction fails: raising then would
    # leave a durable delivery the app never received, counted against max_deliveries.
    path, q = _queue(compact_bytes=200, durability="all")
    for i in range(3):
        q.put("m%d" % i)
    fails_once(q._log, "roll", OSError(28, "test: no space left for a new segment"))
    q.compact_bytes = 1  # the get's event starts a compaction
    assert q.get() == (1, "m0")
    _closed(q)  # before: open, over a closed segment
    with MiniQueue.open(path) as again:
        assert [again.get()[1] for _ in range(3)] == ["m0", "m1", "m2"]


def test_a_put_whose_write_fails_closes_the_queue():
    # sync=N: the put's own write (no group commit) fails; the store closes itself, and
    # the queue must say so at once, not at its next call.
    path, q = _queue(sync=2)
    q.put("a")
    fails_once(q._log.store._file, "write", OSError(5, "test: EIO"))
    raises(OSError, q.put, "b")
    _closed(q)
    with MiniQueue.open(path) as again:
        assert again.get() == (1, "a")
