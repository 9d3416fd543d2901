# Tests that kill mutants no other test killed (tools/mutants.py, MUTANTS.md): each
# names the mutant it was written for. They run on both runtimes, fast.
from support import MICROPYTHON, scratch, raises, read_bytes, write_bytes, has_threads
from waiting import wait_until
from ministore import MiniStore, JournalReader, header_line, record_line, encode_json
from miniqueue import MiniQueue
from minilog import segment_files


def _watch(obj, name, note):
    """Call note() after each call of obj.name (an instance attribute shadows the method)."""
    real = getattr(obj, name)

    def watched(*args):
        result = real(*args)
        note(*args)
        return result
    setattr(obj, name, watched)


# ---------------------------------------------------------------- group commit

def test_a_record_written_while_a_sync_runs_waits_for_the_next_sync():
    # group-commit-target-late: durable_seq must be the seq read before the sync began.
    if MICROPYTHON or not has_threads():
        return  # MicroPython syncs under the writers' lock: nothing is written meanwhile
    import threading
    store = MiniStore.open(scratch() + "/j.jsonl")
    synced_from = []  # store.seq when each sync of the file began
    other = []

    def during_sync():
        if len(synced_from) == 1:  # the first sync is done: another thread writes now
            other.append(threading.Thread(target=store.append, args=(2,)))
            other[0].start()
            wait_until(lambda: store.seq >= 2)  # its record is written; its sync waits for this one
    real_sync = store._file.sync

    def sync():
        synced_from.append(store.seq)
        real_sync()
        during_sync()
    store._file.sync = sync
    store.append(1)
    other[0].join()
    assert store.durable_seq == 2
    assert synced_from == [1, 2], synced_from  # record 2 had a sync of its own, begun after it
    store.close()


def test_a_close_whose_sync_fails_still_releases_the_journal():
    # abandon-close-sync: the error is raised, and the store is closed all the same.
    path = scratch() + "/j.jsonl"
    store = MiniStore.open(path, sync=100)
    store.append(1)

    def failing():
        raise OSError(5, "EIO (test)")
    store._file.sync = failing
    raises(OSError, store.close)
    assert store.closed
    with MiniStore.open(path) as again:  # not LockedError: the failed close let go of the file
        assert again.seq == 1


# ---------------------------------------------------------------- the reader's reporter mode

class _Collect:
    def __init__(self):
        self.reports = []

    def report(self, kind, line, offset, length, reason, lost):
        self.reports.append((kind, line, offset, length, lost))


def test_the_reporter_reports_each_damaged_region_once_and_reads_on():
    # reporter-resync-seq, reporter-region-kept, reporter-lost-range
    lines = [header_line(0)] + [record_line(seq, encode_json({"n": seq})) for seq in range(1, 9)]
    for bad in (3, 6):  # two damaged records, intact ones between and after
        lines[bad] = lines[bad].replace(b'"n":', b'"m":')
    path = scratch() + "/j.jsonl"
    write_bytes(path, b"".join(lines))
    collect = _Collect()
    reader = JournalReader(path, reporter=collect)
    got = [seq for seq, _ in reader]
    assert got == [1, 2, 4, 5, 7, 8]
    offset = [sum(len(x) for x in lines[:i]) for i in range(len(lines))]
    assert collect.reports == [("corrupt", 4, offset[3], len(lines[3]), (3, 3)),
                               ("corrupt", 7, offset[6], len(lines[6]), (6, 6))], collect.reports
    assert reader.torn is None


def _batch_journal(lines_after):
    lines = [header_line(0), record_line(1, encode_json("a"))]
    lines += [record_line(2 + i, encode_json({"b": i}), 3 if i == 0 else 1) for i in range(3)]
    return lines + [record_line(5, encode_json("c"))][:lines_after]


def test_a_batch_that_lost_a_member_is_reported_whole_with_its_intact_lines():
    # mini repair padded over only the damaged line of a batch (lost 2..2 when its first
    # line was damaged, 2..3 for its middle one) and kept the batch's other lines as
    # records of their own: a state manager replayed half an apply_many.
    for after in (1, 0):  # a record after the batch, or the batch ends the file
        for bad in (2, 3, 4):  # its first, middle or last line
            lines = _batch_journal(after)
            lines[bad] = lines[bad].replace(b'"b":', b'"B":')  # the crc no longer matches
            path = scratch() + "/j.jsonl"
            write_bytes(path, b"".join(lines))
            collect = _Collect()
            got = [seq for seq, _ in JournalReader(path, reporter=collect)]
            assert got == [1, 5][:1 + after], (after, bad, got)
            start = len(lines[0]) + len(lines[1])
            expected = ("corrupt", 3, start, sum(len(x) for x in lines[2:5]), (2, 4))
            if not after and bad == 4:  # the damaged line ends the file: a torn tail, the batch with it
                expected = ("torn", 3, start, sum(len(x) for x in lines[2:5]), None)
            assert collect.reports == [expected], (after, bad, collect.reports)
    lines = _batch_journal(1)
    lines[2] = lines[2].replace(b'"batch":3', b'"batcX":3')  # where it starts, unreadable: unknowable
    path = scratch() + "/j.jsonl"
    write_bytes(path, b"".join(lines))
    collect = _Collect()
    assert [seq for seq, _ in JournalReader(path, reporter=collect)] == [1, 3, 4, 5]
    assert collect.reports[0][4] == (2, 2)


# ---------------------------------------------------------------- the queue's deferred events

def _queue_lines(d):
    return read_bytes(segment_files(d)[-1][1])


def test_a_get_and_the_dead_letters_it_passes_over_are_one_batch_even_deferred():
    # queue-lead-not-atomic: a crash that keeps a prefix of the write keeps none of it.
    d = scratch()
    q = MiniQueue.open(d, max_deliveries=1)
    a = q.put("a")
    q.put("b")
    assert q.get()[0] == a
    q.nack(a)
    assert q.get() == (a + 1, "b")  # "a" goes dead on the way: [dead a, get b], deferred
    q.close()
    data = _queue_lines(d)
    dead_at = data.index(b'"rec":{"dead":')
    cut = data.index(b"\n", dead_at) + 1  # a crash kept the dead letter's line, not the get's
    write_bytes(segment_files(d)[-1][1], data[:cut])
    again = MiniQueue.inspect(d)
    assert again.dead() == [], again.dead()
    assert again.deliveries(a) == 1 and again.deliveries(a + 1) == 0


def test_deferred_events_are_written_once_unsynced_events_wait():
    # queue-defer-bound
    d = scratch()
    q = MiniQueue.open(d, unsynced_events=2)
    a = q.put("a")
    q.put("b")
    q.get()           # one deferred event
    before = _queue_lines(d)
    q.get()           # two: written and synced now (an ack would replace its deferred get)
    assert _queue_lines(d) != before
    assert len(MiniQueue.inspect(d)) == 0 and MiniQueue.inspect(d).in_flight() == 2
    q.ack(a)          # one deferred event again
    assert MiniQueue.inspect(d).in_flight() == 2
    q.close()


def test_queue_sync_makes_deferred_acks_durable():
    # queue-flush-in-sync, sync-queue (sync=100: writing the deferred events does not sync them)
    d = scratch()
    q = MiniQueue.open(d, sync=100)
    a = q.put("a")
    q.get()
    q.ack(a)
    synced = []
    _watch(q._log.store._file, "sync", lambda: synced.append(q._log.store.seq))
    q.sync()
    assert synced == [a + 1], synced  # the put and the ack (it replaced its get): one sync after the ack
    assert q._log.durable_seq == a + 1
    seen = MiniQueue.inspect(d)
    assert len(seen) == 0 and seen.in_flight() == 0 and seen.live_bytes() == 0
    q.close()
