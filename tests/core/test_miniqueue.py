# miniqueue tests, on CPython (pytest) and MicroPython (tests/mp/runner.py).
from support import Rng, scratch, raises, read_bytes, write_bytes, MICROPYTHON, float32_values, is_subnormal32, FLOAT32
import minishim
from ministore import MiniStore, LockedError, MiniError, ClosedError
from minilog import CompactionGap, segment_files
from miniqueue import MiniQueue, QueueCorrupt, QueueFull, UnknownMessage


def test_fifo_order_ack_and_len():
    q = MiniQueue.open(scratch())
    ids = [q.put({"t": i}) for i in range(4)]
    assert ids == [1, 2, 3, 4] and len(q) == 4
    got = [q.get() for _ in range(4)]
    assert got == [(ids[i], {"t": i}) for i in range(4)]
    assert q.get() is None and len(q) == 0 and q.in_flight() == 4
    for mid in ids:
        q.ack(mid)
    assert q.in_flight() == 0
    q.close()


def test_put_many_is_atomic_and_returns_ids():
    d = scratch()
    with MiniQueue.open(d) as q:
        assert q.put_many(["a", "b", "c"]) == [1, 2, 3]
        assert q.put_many([]) == []
        raises(TypeError, q.put_many, ["ok", b"bytes"])
        # A str, bytes or dict is one message, not a batch: put_many("ab") would put "a"
        # and "b", put_many({"k": 1}) the key "k" alone.
        for one in ("ab", b"ab", {"k": 1}, bytearray(b"ab")):
            err = raises(TypeError, q.put_many, one)
            assert "a batch is a list" in str(err)
        assert len(q) == 3
    with MiniQueue.open(d) as q:
        assert [q.get()[1] for _ in range(3)] == ["a", "b", "c"]


def test_nack_returns_the_message_to_its_place():
    q = MiniQueue.open(scratch())
    for m in "abc":
        q.put(m)
    first = q.get()
    second = q.get()
    q.nack(first[0])
    assert q.get() == first  # FIFO: the oldest ready message comes first again
    q.nack(second[0])
    q.nack(first[0])
    assert [q.get()[1] for _ in range(3)] == ["a", "b", "c"]
    q.close()


def test_unacked_messages_are_redelivered_after_reopen_with_counts():
    d = scratch()
    q = MiniQueue.open(d)
    for m in ("a", "b", "c", "d"):
        q.put(m)
    a = q.get()
    b = q.get()
    q.ack(a[0])
    q.get()  # c in flight
    q.close()
    q = MiniQueue.open(d)
    assert len(q) == 3 and q.in_flight() == 0
    assert q.deliveries(b[0]) == 1
    items = [q.get() for _ in range(3)]
    assert [m for _, m in items] == ["b", "c", "d"]  # original order
    assert [q.deliveries(mid) for mid, _ in items] == [2, 2, 1]
    q.close()


def test_acked_message_is_never_delivered_again():
    d = scratch()
    with MiniQueue.open(d) as q:
        q.put("x")
        mid = q.get()[0]
        q.ack(mid)
        raises(UnknownMessage, q.ack, mid)
        raises(UnknownMessage, q.nack, mid)
    with MiniQueue.open(d) as q:
        assert q.get() is None


def test_unknown_ids_are_refused():
    with MiniQueue.open(scratch()) as q:
        mid = q.put("x")
        raises(UnknownMessage, q.ack, 999)
        raises(UnknownMessage, q.ack, mid)  # not delivered yet
        raises(UnknownMessage, q.deliveries, 999)


def test_max_deliveries_moves_a_failing_message_to_dead_letters():
    d = scratch()
    q = MiniQueue.open(d, max_deliveries=2)
    q.put("poison")
    q.put("fine")
    mid = q.get()[0]
    q.nack(mid)
    assert q.get()[0] == mid
    q.close()  # crash-like: in flight at close, so delivered again after reopen...
    q = MiniQueue.open(d, max_deliveries=2)
    # peek() shows what get() delivers: not the message get() sends to the dead letters
    assert q.peek()[1] == "fine" and q.dead() == []
    item = q.get()  # ...but it has had its 2 deliveries: it goes to the dead letters
    assert item[1] == "fine"
    assert q.dead() == [(mid, "poison", 2)]
    q.ack(item[0])
    q.close()
    with MiniQueue.open(d, max_deliveries=2) as q:
        assert q.dead() == [(mid, "poison", 2)] and q.get() is None
        assert q.purge_dead() == 1 and q.dead() == []


def test_full_queue_rejects_and_loses_nothing():
    d = scratch()
    q = MiniQueue.open(d, max_bytes=100)
    q.put("x" * 40)
    q.put("y" * 40)
    err = raises(QueueFull, q.put, "z" * 40)
    assert "full" in str(err)
    err = raises(ValueError, q.put, "w" * 200)  # no retry can help: not QueueFull
    assert "a message of 202 bytes can never fit max_bytes=100" in str(err)
    err = raises(ValueError, q.put_many, ["v" * 60, "u" * 60])
    assert "2 messages of 124 bytes can never fit" in str(err)
    assert len(q) == 2
    q.close()
    with MiniQueue.open(d, max_bytes=100) as q:
        assert [q.get()[1][0] for _ in range(2)] == ["x", "y"]


def test_drop_oldest_is_a_ring_buffer_and_counts_drops():
    d = scratch()
    q = MiniQueue.open(d, max_bytes=100, on_full="drop_oldest")
    for i in range(10):
        q.put("%02d" % i + "." * 20)
    assert q.dropped == 6 and len(q) == 4
    q.close()
    with MiniQueue.open(d, max_bytes=100, on_full="drop_oldest") as q:
        assert q.dropped == 6
        assert [q.get()[1][:2] for _ in range(4)] == ["06", "07", "08", "09"]


def test_space_is_reclaimed_over_ten_times_max_bytes():
    d = scratch()
    max_bytes = 2048
    q = MiniQueue.open(d, max_bytes=max_bytes, sync=64)
    sent = 0
    worst = 0
    i = 0
    while sent < 10 * max_bytes:
        q.put({"i": i, "pad": "p" * 30})
        sent += 45
        if i % 3 != 2:  # keep some messages waiting, so checkpoints carry live data
            q.ack(q.get()[0])
        worst = max(worst, q.disk_bytes())
        i += 1
        if len(q) > 20:
            q.ack(q.get()[0])
    bound = 3 * max_bytes + 128 * 64 + 1024  # FORMAT.md 5.4 with ~40-byte messages
    assert worst <= bound, (worst, bound)
    assert len(segment_files(d)) <= 2
    left = len(q)
    q.close()
    with MiniQueue.open(d, max_bytes=max_bytes) as q:
        assert len(q) + q.in_flight() == left


def test_crash_during_compaction_keeps_the_old_state():
    d = scratch()
    q = MiniQueue.open(d, max_bytes=4096, compact_bytes=10 ** 6)
    for i in range(5):
        q.put(i)
    q.ack(q.get()[0])
    q.get()
    q.close()
    # a compaction cut short: a new segment with part of a checkpoint and no end marker
    segments = segment_files(d)
    number, path = segments[-1]
    with MiniStore.open(path) as store:
        base = store.seq
    partial = d + "/journal-%08d.jsonl" % (number + 1)
    with MiniStore.open(partial, base_seq=base) as store:
        store.append({"ckpt": [2, 1, 1, 1]})
    with MiniQueue.open(d) as q:
        assert len(q) == 4 and [q.get()[1] for _ in range(4)] == [1, 2, 3, 4]
        q.put("after")
    with MiniQueue.open(d) as q:
        assert len(q) == 5
        q.compact()
    assert len(segment_files(d)) == 1
    with MiniQueue.open(d) as q:
        assert [q.get()[1] for _ in range(5)] == [1, 2, 3, 4, "after"]


def test_bad_input_and_second_writer():
    d = scratch()
    q = MiniQueue.open(d)
    for bad in (b"x", float("nan"), {1: 2}, (1, 2)):
        raises(Exception, q.put, bad)
    assert len(q) == 0
    raises(LockedError, MiniQueue.open, d)
    q.close()
    raises(ValueError, MiniQueue.open, scratch(), 100, "sometimes")
    raises(ValueError, MiniQueue.open, scratch(), 0)
    raises(MiniError, q.put, "closed")


def test_journal_is_readable_events():
    d = scratch()
    with MiniQueue.open(d, durability="all") as q:
        q.put({"t": 23.5})
        q.ack(q.get()[0])
    events = MiniStore.replay(segment_files(d)[0][1])
    assert events == [{"put": {"t": 23.5}}, {"get": 1}, {"ack": 1}]


def test_inspect_reads_without_locking_or_writing():
    d = scratch()
    q = MiniQueue.open(d, max_deliveries=1)
    for m in "abcd":
        q.put(m)
    q.ack(q.get()[0])
    q.get()
    poison = q.get()[0]
    q.nack(poison)
    q.get()  # poison is ready with 1 delivery: moved to dead, "d" delivered
    q.sync()  # gets and acks are durable (and on MicroPython, in the file) from here
    view = MiniQueue.inspect(d)  # while the writer still holds the queue
    assert len(view) == 0 and view.in_flight() == 2
    assert [mid for mid, _, _ in view.dead()] == [poison]
    assert view.last_seq == q.seq
    q.close()


def test_oldest_segment_with_an_unfinished_checkpoint_is_a_gap():
    from minilog import CompactionGap
    d = scratch()
    with MiniStore.open(d + "/journal-00000002.jsonl", base_seq=5) as store:
        store.append({"ckpt": [3, "three", 0, 0]})
    raises(CompactionGap, MiniQueue.open, d)
    raises(CompactionGap, MiniQueue.inspect, d)
    with MiniStore.open(d + "/journal-00000002.jsonl") as store:
        store.append({"put": "x"})  # an event before any complete checkpoint
    raises(CompactionGap, MiniQueue.inspect, d)


def test_cut_while_removing_old_segments_after_an_unfinished_checkpoint():
    # 1. a compaction is cut right after it started a new segment (no checkpoint);
    # 2. the reopened queue appends to that segment;
    # 3. the next compaction completes its checkpoint and is cut after removing
    #    only the oldest segment. The queue must open, as the one before the cut.
    d = scratch()
    q = MiniQueue.open(d, compact_bytes=10 ** 6)
    for i in range(4):
        q.put(i)
    q.ack(q.get()[0])
    q._log.roll()  # step 1, then the "crash"
    q.close()
    q = MiniQueue.open(d, compact_bytes=10 ** 6)
    q.put("later")  # step 2
    q.ack(q.get()[0])
    middle = segment_files(d)[1][1]
    q.sync()  # as compact() does before anything else: the cut comes after it
    saved = read_bytes(middle)
    q.compact()  # step 3 ...
    q.close()
    write_bytes(middle, saved)  # ... as if the cut came after removing only the oldest
    with MiniQueue.open(d) as q:
        assert len(q) == 3
        got = [q.get()[1] for _ in range(3)]
        assert got == [2, 3, "later"], got


def test_random_operations_match_a_simple_model():
    # Long enough to cross the ready list's trimming point many times, with
    # nacks (re-inserts), drops (ring buffer) and reopens mixed in.
    rng = Rng(7)
    d = scratch()
    q = MiniQueue.open(d, max_bytes=1200, on_full="drop_oldest", sync=50)
    ready = []      # model: ready ids ascending
    flying = {}     # id -> message
    content = {}
    for step in range(1500):
        op = rng.random()
        if op < 0.45:
            msg = {"n": step, "pad": "x" * rng.randint(0, 30)}
            before = q.dropped
            mid = q.put(msg)
            content[mid] = msg
            for _ in range(q.dropped - before):
                content.pop(ready.pop(0))  # the oldest ready ones were dropped
            ready.append(mid)
        elif op < 0.8:
            item = q.get()
            if not ready:
                assert item is None
                continue
            expect = ready.pop(0)
            assert item == (expect, content[expect]), (step, item, expect)
            flying[expect] = True
        elif op < 0.9 and flying:
            mid = rng.choice(sorted(flying))
            del flying[mid]
            q.ack(mid)
            del content[mid]
        elif op < 0.97 and flying:
            mid = rng.choice(sorted(flying))
            del flying[mid]
            q.nack(mid)
            ready.append(mid)
            ready.sort()
        else:
            q.close()
            q = MiniQueue.open(d, max_bytes=1200, on_full="drop_oldest", sync=50)
            ready = sorted(ready + list(flying))  # in flight at a restart: ready again
            flying = {}
        assert len(q) == len(ready) and q.in_flight() == len(flying), step
    q.close()


def test_closed_queue_refuses_work_and_keeps_its_seq():
    q = MiniQueue.open(scratch())
    q.put("a")
    q.close()
    assert q.seq == 1 and q.closed
    for call, args in ((q.put, ("b",)), (q.get, ()), (q.ack, (1,)), (q.nack, (1,)),
                       (q.purge_dead, ()), (q.compact, ()), (q.disk_bytes, ()), (q.sync, ())):
        raises(ClosedError, call, *args)


def test_intact_events_of_the_wrong_shape_are_refused():
    # Events no queue writes (FORMAT.md 5.1) raise QueueCorrupt, never a TypeError.
    wrong = [{"ckpt_end": 5}, {"ckpt_end": {"messages": 3, "dropped": 0}}, {"get": [1]}, {"ack": {"a": 1}},
             {"nack": True}, {"get": 9}, {"ckpt": [1, "m", 0]}, {"ckpt": [1, "m", -1, 0]},
             {"ckpt": [1, "m", 0, 7]}, {"ckpt": [[1], "m", 0, 0]}, {"frob": 1}, [1], {"get": 1, "ack": 1},
             {"ckpt": [1, "m", 0, 1.0]}, {"ckpt": [2, "m", 0, 0]}, {"get": 2}, {"ack": 1.0}]
    for event in wrong:
        d = scratch()
        with MiniQueue.open(d) as q:
            q.put("m")
            q._log.append(event)  # an intact event: the only way to get one on disk
        err = raises(QueueCorrupt, MiniQueue.inspect, d)
        assert "seq 2" in str(err), err
        raises(QueueCorrupt, MiniQueue.open, d)
        assert isinstance(err, MiniError)


def test_checkpoint_begun_again_after_a_cut_one_counts_each_message_once():
    # A checkpoint cut after its first chunk; a reopen and a compact() at once, so no
    # event separates the two checkpoints; a cut before the old segments are removed.
    d = scratch()
    with MiniQueue.open(d) as q:
        for i in range(40):
            q.put(i)
        q._log.roll()
        q._log.append_many([{"ckpt": [mid, mid - 1, 0, 0]} for mid in range(1, 33)])
    with MiniQueue.open(d) as q:
        assert len(q) == 40 and q.live_bytes() == 70
        q._log.compact = lambda upto_seq: 0
        q.compact()
    q = MiniQueue.inspect(d)
    assert len(q) == 40 and q.live_bytes() == 70
    with MiniQueue.open(d) as q:
        assert [q.get()[1] for _ in range(40)] == list(range(40))


def test_only_segment_left_with_a_torn_header_is_refused_not_emptied():
    # After compaction the oldest segment is numbered above 1. If its header is cut
    # (damage: no crash can do that once the segments before it are removed), the
    # queue used to open empty, ids restarting at 1.
    d = scratch()
    with MiniQueue.open(d, compact_bytes=200) as q:
        for i in range(30):
            q.put(i)
            if i % 2:
                q.ack(q.get()[0])
    found = segment_files(d)
    assert len(found) == 1 and found[0][0] > 1, found
    path = found[0][1]
    data = read_bytes(path)
    write_bytes(path, data[:20])
    raises(CompactionGap, MiniQueue.open, d)
    raises(CompactionGap, MiniQueue.inspect, d)
    assert read_bytes(path) == data[:20]  # refused, not rewritten


def test_a_redelivered_message_equals_its_first_delivery():
    # Issue 14: on a single-precision runtime a float can parse back 1 ulp away from
    # its text; the queue journals and delivers the same settled bytes, also through
    # a checkpoint. A float32 subnormal that drifts at every pass is refused.
    values = float32_values(60, seed=4) + [0.109633684, 28.512085]  # fits a 128 KB heap
    d = scratch()
    first = {}
    with MiniQueue.open(d, compact_bytes=1000) as q:
        for v in values:
            try:
                q.put({"v": v, "l": [v, {"x": v}]})
            except ValueError:
                assert FLOAT32 and is_subnormal32(v), v
        for _ in range(20):  # some acked (checkpoints rewrite the rest), the others in flight
            mid, msg = q.get()
            q.ack(mid)
        while True:
            item = q.get()
            if item is None:
                break
            first[item[0]] = minishim.dumps(item[1])
    with MiniQueue.open(d, compact_bytes=1000) as q:
        again = {}
        while True:
            item = q.get()
            if item is None:
                break
            again[item[0]] = minishim.dumps(item[1])
            assert item[1] == minishim.loads(first[item[0]])
    assert again == first and len(first) > 30


def test_a_checkpoint_of_long_messages_is_written_in_batches_of_about_4_kib():
    # A batch is encoded, sealed and joined at once: 32 messages of 4 KB would need about
    # 128 KB of one board's heap, so batches stop at about 4 KiB of messages.
    d = scratch()
    q = MiniQueue.open(d, max_bytes=64 * 1024, compact_bytes=10 ** 6)

    def message(i):  # made when needed: a board's heap holds a few of them, not all
        return "m%d" % i + "x" * 2000

    for i in range(7):
        q.put(message(i))
    assert q.compact() == 7
    batches = []
    within = 0  # lines left of the batch being read
    with open(segment_files(d)[-1][1], "rb") as f:
        f.readline()  # the header
        while True:
            head = f.readline(40)  # what a batch's first line says of it
            if not head:
                break
            if within:
                within -= 1
            elif head.startswith(b'{"seq":'):
                size = int(head.split(b'"batch":')[1].split(b",")[0]) if b'"batch":' in head else 1
                batches.append(size)
                within = size - 1
            while not head.endswith(b"\n"):
                head = f.readline(512)
    assert batches and max(batches) == 2 and sum(batches) == 7 + 1, batches  # the entries and ckpt_end
    q.close()
    with MiniQueue.open(d) as again:
        for i in range(7):
            assert again.get()[1] == message(i)
