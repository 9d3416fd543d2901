# When each queue event is durable (FORMAT.md 5.2), read as a crash would leave it:
# MiniQueue.inspect() of the directory while the writer is still open, or the journal's
# events. On CPython (pytest) and MicroPython (tests/mp/runner.py).
from support import scratch
from ministore import MiniStore
from minilog import segment_files
from miniqueue import MiniQueue


def test_a_nack_is_durable_so_one_crash_loses_at_most_one_delivery_count():
    # get, nack, get, nack all kept in RAM (durability="puts"): a crash lost both gets,
    # and with max_deliveries=2 the message was delivered twice more, 4 deliveries to
    # the app after one crash (found by the SIGKILL campaign of test_crash_miniqueue_limits).
    d = scratch()
    q = MiniQueue.open(d, max_deliveries=2)
    mid = q.put("flaky")
    for count in (1, 2):
        assert q.get() == (mid, "flaky")
        q.nack(mid)
        on_disk = MiniQueue.inspect(d)  # what a crash now would leave (the writer is still open)
        assert on_disk.deliveries(mid) == count, (count, on_disk.deliveries(mid))
    q.close()
    with MiniQueue.open(d, max_deliveries=2) as q:
        assert q.get() is None and q.dead() == [(mid, "flaky", 2)]


def test_dead_letter_is_durable_when_it_returns():
    # It was kept in RAM (durability="puts"): a crash lost it, and with no max_deliveries
    # nothing sent the message back to the dead letters. It came back ready, for ever.
    d = scratch()
    q = MiniQueue.open(d)
    q.put("poison")
    q.put("fine")
    mid = q.get()[0]
    q.dead_letter(mid)
    on_disk = MiniQueue.inspect(d)  # what a crash now would leave (the writer is still open)
    assert on_disk.dead() == [(mid, "poison", 1)] and len(on_disk) == 1
    q.close()


def test_an_ack_replaces_its_get_while_the_get_is_not_yet_written():
    # durability="puts": a get is deferred; acked before anything writes it, only the
    # ack is journaled (FORMAT.md 5.2). A get already written, or one batched with dead
    # letters, stays; a nack never replaces its get (the delivery count must survive).
    d = scratch()
    with MiniQueue.open(d, max_deliveries=1) as q:
        a, b, c, e = q.put("a"), q.put("b"), q.put("c"), q.put("e")
        assert q.get()[0] == a
        assert q.get()[0] == b
        q.ack(a)          # its get is deferred, not last: dropped all the same
        q.sync()
        q.ack(b)          # its get was written by the sync: it stays
        assert q.get()[0] == c
        q.nack(c)
        assert q.get() == (e, "e")  # c is out of deliveries: dead, in the get's batch
        q.ack(e)
        assert q.seq == 12
    events = MiniStore.replay(segment_files(d)[0][1])
    assert events == [{"put": "a"}, {"put": "b"}, {"put": "c"}, {"put": "e"}, {"get": b}, {"ack": a},
                      {"ack": b}, {"get": c}, {"nack": c}, {"dead": c}, {"get": e}, {"ack": e}], events
    with MiniQueue.open(d) as q:
        assert q.dead() == [(c, "c", 1)]
        assert q.get() is None and len(q) == 0
    # Delivered, nacked, delivered again and acked, all in RAM: only the last get goes.
    d = scratch()
    with MiniQueue.open(d) as q:
        x = q.put("x")
        q.get()
        q.nack(x)
        q.get()
        q.ack(x)
    events = MiniStore.replay(segment_files(d)[0][1])
    assert events == [{"put": "x"}, {"get": x}, {"nack": x}, {"ack": x}], events
    # The same with another get after it: the ack looks back past that one, and still
    # drops only the last get of its message, never the one before the nack.
    d = scratch()
    with MiniQueue.open(d) as q:
        x, y = q.put("x"), q.put("y")
        q.get()
        q.nack(x)
        assert q.get()[0] == x
        assert q.get()[0] == y
        q.ack(x)
        q.ack(y)
        assert q.seq == 6
    events = MiniStore.replay(segment_files(d)[0][1])
    assert events == [{"put": "x"}, {"put": "y"}, {"get": x}, {"nack": x}, {"ack": x}, {"ack": y}], events
