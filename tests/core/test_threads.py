# Several threads may share one brick (README "Threads"): every public method holds
# the object's lock. Each test reopens what the threads wrote and checks exact counts.
from support import MICROPYTHON, appender, scratch, raises, run_threads, has_threads
from waiting import wait_until
from ministore import MiniStore, LockedError, ClosedError, encode_json
from ministate import StateManager, Mutator
from miniqueue import MiniQueue

THREADS = 4


class Add(Mutator):
    def __init__(self, key, by):
        self.key = key
        self.by = by

    def apply(self, state):
        state[self.key] = state.get(self.key, 0) + self.by


def test_threads_appending_to_one_store_get_unique_seqs_and_lose_nothing():
    if not has_threads():
        return
    path = scratch() + "/j.jsonl"
    store = MiniStore.open(path)
    per_thread = [[] for _ in range(THREADS)]
    run_threads(appender(store, per_thread), THREADS)
    store.close()
    seqs = [seq for mine in per_thread for seq in mine]
    expected = THREADS * (36 + 4 * 3)
    assert sorted(seqs) == list(range(1, expected + 1))
    read = list(MiniStore.stream(path))
    assert [seq for seq, _ in read] == list(range(1, expected + 1))
    for t in range(THREADS):
        mine = [rec for _, rec in read if rec[0] == t]
        assert len(mine) == 48
        batch = [rec for rec in mine if len(rec) == 3]
        for k in range(0, len(batch), 3):  # a batch's records stay together, in order
            assert [rec[2] for rec in batch[k:k + 3]] == [0, 1, 2]
    with MiniStore.open(path) as store:
        assert store.seq == expected


def test_a_thread_waiting_for_a_sync_that_fails_is_not_told_its_record_is_durable():
    # group-commit-failed-sync: the sync that covered the waiting thread's record failed.
    if MICROPYTHON or not has_threads():
        return  # MicroPython syncs under the writers' lock: no thread waits on a running sync
    import threading
    store = MiniStore.open(scratch() + "/j.jsonl")
    store.append_encoded([encode_json("written, not synced")], durable=False)
    others = []
    outcome = []

    def other_sync():
        try:
            store.sync()
            outcome.append("returned")
        except ClosedError:
            outcome.append("ClosedError")

    def failing_sync():
        others.append(threading.Thread(target=other_sync))
        others[0].start()
        wait_until(lambda: store._followers)  # it waits for this sync, which covers its record
        raise OSError(5, "EIO (test)")
    store._file.sync = failing_sync
    raises(OSError, store.sync)
    others[0].join()
    assert outcome == ["ClosedError"], outcome
    assert store.durable_seq == 0 and store.closed


def test_many_threads_share_syncs_and_each_append_is_durable_when_it_returns():
    if not has_threads():
        return
    store = MiniStore.open(scratch() + "/j.jsonl")
    real_sync = store._file.sync
    # per thread: (seq its append returned, durable_seq right after); no GIL on some ports
    seen = [[] for _ in range(THREADS)]
    syncs = [0]

    def counted_sync():
        syncs[0] += 1  # one sync at a time (the leader's), so no lock is needed for this
        real_sync()
    store._file.sync = counted_sync

    def writer(t):
        for i in range(30):
            seq = store.append([t, i])
            on_disk = None
            if not MICROPYTHON:  # the line is in the file (not left to a sync that never wrote it)
                with open(store.path, "rb") as f:
                    on_disk = (b'{"seq":%d,"rec":[%d,%d]' % (seq, t, i)) in f.read()
            seen[t].append((seq, store.durable_seq, on_disk))
    run_threads(writer, THREADS)
    for mine in seen:
        for seq, durable, on_disk in mine:
            assert durable >= seq and on_disk is not False, (seq, durable, on_disk)
    assert 1 <= syncs[0] <= THREADS * 30
    store.close()
    assert [seq for seq, _ in MiniStore.stream(store.path)] == list(range(1, THREADS * 30 + 1))


def _start_during_the_next_sync(store, target, later, check=None):
    """Make the store's next sync first start `target` in a thread and wait until the
    thread's line is left to the sync after it (seq 2), then run check(), write `later`
    without a sync, and sync. Returns a list that then holds the thread."""
    import threading
    real_sync = store._file.sync
    started = []

    def first_sync():
        store._file.sync = real_sync
        started.append(threading.Thread(target=target))
        started[0].start()
        wait_until(lambda: store.seq >= 2)  # its line is left to the next sync
        if check is not None:
            check()
        store.append_encoded([encode_json(later)], durable=False)
        real_sync()
    store._file.sync = first_sync
    return started


def test_lines_left_to_a_sync_are_written_before_any_later_line():
    # group-commit-pending-dropped: a thread that appends while a sync runs leaves its
    # line to the next leader; a write in between (durable=False) must not overtake it.
    if MICROPYTHON or not has_threads():
        return  # MicroPython syncs under the writers' lock: no thread waits on a running sync
    path = scratch() + "/j.jsonl"
    store = MiniStore.open(path)
    started = _start_during_the_next_sync(store, lambda: store.append("waits"), "unsynced")
    assert store.append("leads") == 1
    started[0].join()
    store.close()
    assert list(MiniStore.stream(path)) == [(1, "leads"), (2, "waits"), (3, "unsynced")]


def test_under_sync_1_an_append_during_a_sync_is_left_to_the_next_sync():
    # sync=1 is sync="always" (README): another thread's append while a sync runs joins
    # the group commit. Written at once, as it was, it made an unsynced stretch with no
    # "sync point" before it, where a file system that lands appends out of order could
    # leave a hole with the later line intact after a power cut: refused as corruption
    # (FORMAT.md 2.3), and the journal would not open without `mini repair`.
    if MICROPYTHON or not has_threads():
        return  # MicroPython syncs under the writers' lock: no thread waits on a running sync
    path = scratch() + "/j.jsonl"
    store = MiniStore.open(path, sync=1)

    def left_to_the_next_sync():
        assert store._pending, "written during the sync"
    started = _start_during_the_next_sync(store, lambda: store.append("waits"), "unsynced", left_to_the_next_sync)
    assert store.append("leads") == 1
    started[0].join()
    store.close()
    assert list(MiniStore.stream(path)) == [(1, "leads"), (2, "waits"), (3, "unsynced")]


def test_two_appends_before_either_syncs_are_written_in_one_write_then_synced():
    # Under sync="always" each unsynced stretch of the file is one write (FORMAT.md 2.3):
    # a thread that appends after another's append, before that one syncs, leaves its
    # line to the same leader. Written by each thread, the two lines made a stretch of
    # two writes, which a file system that lands appends out of order could keep as a
    # hole before an intact line after a power cut: refused as corruption, and the
    # journal would not open without `mini repair`.
    if not has_threads():
        return
    path = scratch() + "/j.jsonl"
    store = MiniStore.open(path)
    events = []
    real_write = store._write
    real_sync = store._file.sync
    real_sync_if_due = store._sync_if_due

    def recorded_write(data, count):
        events.append("write")
        return real_write(data, count)

    def recorded_sync():
        events.append("sync")
        real_sync()

    def second_append_first(seq):  # the first append, between its write and its sync
        if seq == 1:
            run_threads(lambda i: store.append("second"), 1)
        real_sync_if_due(seq)
    store._write = recorded_write
    store._file.sync = recorded_sync
    store._sync_if_due = second_append_first
    assert store.append("first") == 1
    assert events == ["write", "sync"], events
    assert store.durable_seq == 2
    store.close()
    assert list(MiniStore.stream(path)) == [(1, "first"), (2, "second")]


def test_an_interrupt_as_the_leader_begins_its_sync_does_not_leave_the_others_waiting():
    # Ctrl-C lands in the main thread at the next call, which may be the leader's call of
    # _sync_file, before its own handling: the lead must be undone, or every later
    # append (and close()) waits for a sync that never ends.
    if not has_threads():
        return
    path = scratch() + "/j.jsonl"
    store = MiniStore.open(path)
    real_sync_file = store._sync_file

    def interrupted(*args):
        store._sync_file = real_sync_file
        raise KeyboardInterrupt
    store._sync_file = interrupted
    raises(KeyboardInterrupt, store.append, "interrupted")  # written, not known to be durable
    assert not store._leading
    run_threads(lambda i: store.append("after"), 1)  # would wait for ever (run_threads fails it)
    store.close()
    assert list(MiniStore.stream(path)) == [(1, "interrupted"), (2, "after")]


def test_a_write_that_waits_is_left_to_the_next_sync_and_durable_when_the_wait_returns():
    # append_encoded(durable=False, waits=True) then wait_durable() (miniqueue's concurrent
    # puts): while a sync runs, its line is left to the next sync, and still comes before
    # any later line.
    if MICROPYTHON or not has_threads():
        return  # MicroPython syncs under the writers' lock: no thread waits on a running sync
    path = scratch() + "/j.jsonl"
    store = MiniStore.open(path)
    waited = []

    def put_and_wait():
        seq = store.append_encoded([encode_json("put")], durable=False, waits=True)
        store.wait_durable(seq)
        waited.append((seq, store.durable_seq))

    def left_to_the_next_sync():
        assert store._pending and not waited  # left to the next sync, not written yet
    _start_during_the_next_sync(store, put_and_wait, "later", left_to_the_next_sync)
    assert store.append("leads") == 1
    wait_until(lambda: waited)  # it leads the next sync itself
    assert waited == [(2, 3)], waited  # the next sync covered it (and the later line)
    store.close()
    assert list(MiniStore.stream(path)) == [(1, "leads"), (2, "put"), (3, "later")]


def test_a_standby_whose_threads_do_not_come_back_leads_on_its_own():
    # After a shared sync, the next append stands by for the threads that sync let go;
    # when none comes back, it syncs alone after its wait (the wait's timeout path).
    if MICROPYTHON or not has_threads():
        return  # MicroPython syncs under the writers' lock: no thread waits on a running sync
    path = scratch() + "/j.jsonl"
    store = MiniStore.open(path)
    store.append("first")
    store._due = 3  # as if a sync had let go three threads that never append again
    store._sync_time = 0.001
    seq = store.append("alone")
    assert store.durable_seq >= seq == 2 and store._standby is None and store._due == 0
    assert store._pending == [] and store._followers == []
    store.close()
    assert list(MiniStore.stream(path)) == [(1, "first"), (2, "alone")]


def test_a_standby_whose_timer_ends_during_the_sync_it_follows_waits_for_that_sync():
    # The last thread back leads and makes the standby follow its sync without waking it;
    # the standby's timer may end during that sync: it must wait for it, once. The test
    # ends the timer itself, during the sync: a 3 ms timer against the test thread's
    # scheduling hung this test on a loaded machine (the timer ended first).
    if MICROPYTHON or not has_threads():
        return  # MicroPython syncs under the writers' lock: no thread waits on a running sync
    import threading
    import minishim
    path = scratch() + "/j.jsonl"
    store = MiniStore.open(path)
    real_sync = store._file.sync
    real_held_lock = minishim.held_lock
    returned = []
    during = []
    timer_ends = threading.Event()
    waits_again = threading.Event()  # the standby, its timer over, waits for the sync it follows

    class Gate:  # the standby's gate: its timed wait ends when the test says
        def __init__(self):
            self.lock = real_held_lock()

        def acquire(self, blocking=True, timeout=-1):
            if timeout is not None and timeout >= 0:
                assert timer_ends.wait(60), "the test never ended the standby's timer"
                return False
            waits_again.set()
            return self.lock.acquire()

        def release(self):
            self.lock.release()

    def slow_sync():
        timer_ends.set()
        assert waits_again.wait(60), "the standby did not wait for the sync it follows"
        during.append((list(returned), [seq for seq, _ in store._followers]))
        real_sync()
    store._due = 2  # two threads let go by the last sync are not back yet
    store._sync_time = 10.0  # a long timer: only the test ends it
    minishim.held_lock = Gate
    try:
        standby = threading.Thread(target=lambda: returned.append(store.append("standby")))
        standby.start()
        wait_until(lambda: store._standby is not None)
    finally:
        minishim.held_lock = real_held_lock
    store._file.sync = slow_sync
    assert store.append("last back") == 2  # it leads: its sync covers the standby's line
    standby.join()
    assert during == [([], [1])], during  # the standby had not returned, and followed once
    assert returned == [1] and store.durable_seq == 2 and store._followers == []
    store.close()
    assert list(MiniStore.stream(path)) == [(1, "standby"), (2, "last back")]


def test_threads_applying_with_automatic_snapshots_reopen_to_the_same_state():
    if not has_threads():
        return
    d = scratch()
    sm = StateManager.open(d, initial={}, mutators=[Add], snapshot_every=7, keep=2)

    def worker(t):
        for i in range(25):
            if i % 5 == 4:
                sm.apply_many([Add("t%d" % t, 1), Add("all", 1)])
            else:
                sm.apply(Add("t%d" % t, 1))
            if i == 12:
                sm.create_snapshot()
    run_threads(worker, THREADS)
    with sm.lock:
        live = dict(sm.state)
    sm.close()
    for t in range(THREADS):
        assert live["t%d" % t] == 25
    assert live["all"] == THREADS * 5
    with StateManager.open(d, initial={}, mutators=[Add]) as again:
        assert again.state == live


def test_producer_and_consumer_threads_share_a_queue_through_compaction():
    if not has_threads():
        return
    d = scratch()
    q = MiniQueue.open(d, max_bytes=64 * 1024, compact_bytes=600)
    produced = 2 * 60
    acked_by = [[] for _ in range(THREADS)]  # one list per thread (no GIL on some ports)

    def worker(t):
        acked = acked_by[t]
        if t < 2:
            for i in range(60):
                q.put({"p": t, "i": i})
            return
        idle = 0
        while idle < 2000:
            got = q.get()
            if got is None:
                idle += 1
                continue
            idle = 0
            mid, message = got
            if message["i"] % 7 == 3 and q.deliveries(mid) == 1:
                q.nack(mid)
            else:
                q.ack(mid)
                acked.append(mid)
    run_threads(worker, THREADS)
    acked = [mid for mine in acked_by for mid in mine]
    left = len(q) + q.in_flight()
    q.close()
    assert len(acked) == len(set(acked))
    assert len(acked) + left == produced
    with MiniQueue.open(d) as again:
        rest = []
        got = again.get()
        while got is not None:
            rest.append(got[0])
            again.ack(got[0])
            got = again.get()
    assert sorted(acked + rest) == sorted(set(acked + rest)) and len(acked) + len(rest) == produced


def test_a_second_writer_is_refused_however_the_path_is_spelled():
    d = scratch()
    import os
    os.mkdir(d + "/sub")
    spellings = []
    for spelling in ("/./j.jsonl", "//j.jsonl", "/sub/../j.jsonl"):
        try:
            os.stat(d + spelling.rsplit("/", 1)[0])
            spellings.append(spelling)
        except OSError:
            pass  # FAT on MicroPython takes no ".", ".." or "//" in a path
    if not spellings:
        return  # FAT: no other spelling of the path opens a file, so none can be a second writer
    with MiniStore.open(d + "/j.jsonl"):
        for spelling in spellings:
            raises(LockedError, MiniStore.open, d + spelling)
    with MiniQueue.open(d + "/q"):
        raises(LockedError, MiniQueue.open, d + spellings[0].replace("j.jsonl", "q"))
    with MiniStore.open(d + spellings[-1]) as store:  # released: open again
        assert store.seq == 0
