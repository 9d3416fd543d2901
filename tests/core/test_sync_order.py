# What a run without crashes cannot see, checked fast on both runtimes: the order of
# syncs against the steps that rely on them, a checkpoint that restates the queue
# exactly, and a failed write that stops its writer. tests/test_crash_states.py
# checks the same through crash states (CPython); these catch the same bugs in
# milliseconds, and on MicroPython too.
from support import scratch, raises
from ministore import MiniStore, ClosedError
from ministate import StateManager, Mutator
from miniqueue import MiniQueue, UnknownMessage
from minilog import segment_files


class Add(Mutator):
    def __init__(self, n):
        self.n = n

    def apply(self, state):
        state["n"] += self.n


def _fail_writes(journal_file, keep=0):
    """Make the journal's next writes land only their first `keep` bytes, then raise EIO."""
    real = journal_file.write

    def failing(data):
        if keep:
            real(data[:keep])
        raise OSError(5, "EIO (test)")
    journal_file.write = failing


def _watch(obj, name, note):
    """Call note() before each call of obj.name (an instance attribute shadows the method)."""
    real = getattr(obj, name)

    def watched(*args):
        note(*args)
        return real(*args)
    setattr(obj, name, watched)


# ---------------------------------------------------------------- syncs before the steps that rely on them

def test_a_snapshot_is_never_ahead_of_the_durable_journal():
    for every in (None, 3):
        sm = StateManager.open(scratch(), initial={"n": 0}, mutators=[Add], snapshot_every=every, sync=100)
        seen = []
        _watch(sm._snaps, "create", lambda state, seq, *rest: seen.append((seq, sm._log.store.durable_seq)))
        for i in range(5):
            sm.apply(Add(i))
        sm.create_snapshot()
        sm.close()
        assert len(seen) == (2 if every else 1), seen
        for seq, durable in seen:
            assert seq <= durable, "snapshot at seq %d written while the journal was durable to %d" % (seq, durable)


def test_a_compaction_removes_segments_only_once_the_checkpoint_is_durable():
    # (ministate's compaction follows a roll, which closes, so syncs, the old segment;
    # its snapshot's sync is checked above.)
    q = MiniQueue.open(scratch(), sync=100)
    log = q._log
    seen = []
    _watch(log, "compact", lambda upto: seen.append((log.store.seq, log.store.durable_seq)))
    for i in range(4):
        q.put(i)
    q.get()
    q.compact()
    assert seen == [(log.store.seq, log.store.seq)], seen  # the ckpt_end is durable before segments go
    q.close()


def test_close_makes_every_record_durable_under_sync_n():
    path = scratch() + "/j.jsonl"
    store = MiniStore.open(path, sync=100)
    store.append_many(["a", "b"])
    store.append("c")
    synced = []
    _watch(store._file, "sync", lambda: synced.append(store.seq))
    store.close()
    assert synced == [3]


# ---------------------------------------------------------------- a checkpoint restates the queue exactly

def test_a_checkpoint_keeps_delivery_counts_states_and_drops():
    directory = scratch()
    q = MiniQueue.open(directory, max_bytes=40, on_full="drop_oldest", max_deliveries=3)
    first = q.put("first")
    q.get()
    q.nack(first)
    q.get()                                  # first: 2 deliveries, in flight
    second = q.put("second")
    assert q.get() == (second, "second")     # 1 delivery, in flight
    q.nack(second)
    q.get()
    q.nack(second)
    q.get()
    q.nack(second)
    assert q.get() is None                   # second: out of deliveries, dead
    third = q.put("third")
    q.put("x" * 20)                          # drops "third", the oldest ready message
    assert q.dropped == 1
    q.compact()
    q.close()
    assert len(segment_files(directory)) == 1  # what follows comes from the checkpoint alone
    q = MiniQueue.open(directory, max_bytes=40, on_full="drop_oldest", max_deliveries=3)
    assert q.deliveries(first) == 2
    assert q.dead() == [(second, "second", 3)]
    assert q.dropped == 1
    raises(UnknownMessage, q.deliveries, third)
    assert len(q) == 2 and q.in_flight() == 0
    assert q.get() == (first, "first")       # in flight at the checkpoint: delivered again, first
    assert q.deliveries(first) == 3
    q.close()


# ---------------------------------------------------------------- a failed write stops its writer

def test_a_failed_write_closes_the_store_and_the_next_open_cuts_what_it_left():
    for keep in (0, 9):
        path = scratch() + "/j.jsonl"
        store = MiniStore.open(path)
        store.append("a")
        _fail_writes(store._file, keep)
        raises(OSError, store.append, "b" * 100)
        assert store.closed
        raises(ClosedError, store.append, "c")
        store = MiniStore.open(path)         # the lock went with the failed handle
        store.append("d")
        store.close()
        assert MiniStore.replay(path) == ["a", "d"]


def test_a_failed_sync_closes_the_store():
    path = scratch() + "/j.jsonl"
    store = MiniStore.open(path, sync=10)
    store.append("a")

    def failing():
        raise OSError(5, "EIO (test)")
    store._file.sync = failing
    raises(OSError, store.sync)
    assert store.closed
    raises(ClosedError, store.append, "b")
    MiniStore.open(path).close()


def test_a_failed_journal_write_closes_the_state_manager_and_the_queue():
    directory = scratch()
    sm = StateManager.open(directory, initial={"n": 0}, mutators=[Add])
    sm.apply(Add(1))
    _fail_writes(sm._log.store._file)
    raises(OSError, sm.apply, Add(2))
    assert sm.closed  # its memory is ahead of the disk
    raises(ClosedError, sm.apply, Add(3))
    sm = StateManager.open(directory, initial={"n": 0}, mutators=[Add])
    assert sm.state == {"n": 1}
    sm.close()

    directory = scratch()
    q = MiniQueue.open(directory)
    q.put("a")
    _fail_writes(q._log.store._file, 5)
    raises(OSError, q.put, "b")
    assert q.closed
    raises(ClosedError, q.get)
    q = MiniQueue.open(directory)
    assert q.get()[1] == "a" and q.get() is None
    q.close()


class Boom(Mutator):
    def apply(self, state):
        state["n"] += 1000
        raise ValueError("boom")


def test_a_rebuild_after_a_raising_mutator_sees_the_records_not_yet_synced():
    # Under sync=N the last records may still be in the writer's buffers (LittleFS
    # keeps them in the file's cache until a sync): the rebuild reads the journal
    # through another handle, so it must sync first or it loses them from memory.
    directory = scratch()
    sm = StateManager.open(directory, initial={"n": 0}, mutators=[Add, Boom], snapshot_every=None, sync=100)
    sm.apply(Add(1))
    sm.create_snapshot()
    sm.apply(Add(2))
    sm.apply_many([Add(3), Add(4)])
    raises(ValueError, sm.apply, Boom())
    assert sm.state == {"n": 10}, sm.state
    sm.apply(Add(5))
    sm.close()
    sm = StateManager.open(directory, initial={"n": 0}, mutators=[Add, Boom])
    assert sm.state == {"n": 15}, sm.state
    sm.close()
