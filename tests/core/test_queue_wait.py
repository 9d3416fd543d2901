# Waiting for messages (issue 17): get(timeout) woken by another thread's put, nack
# delays with backoff, `await q.aget()`, and the group commit of concurrent puts
# (issue 15): a put is never delivered before it is durable. On both runtimes.
from support import scratch, raises, run_threads, has_threads, MICROPYTHON
import minishim as shim
from ministore import ClosedError
from miniqueue import MiniQueue
from miniwait import backoff


def _elapsed_ms(start):
    return shim.ticks_diff(shim.ticks_ms(), start)


def test_get_with_a_timeout_is_woken_by_a_put_from_another_thread():
    if not has_threads():
        return
    q = MiniQueue.open(scratch())
    got = [None, None]

    def role(i):
        if i == 0:
            start = shim.ticks_ms()
            got[0] = q.get(timeout=60)
            got[1] = _elapsed_ms(start)
        else:
            shim.sleep_ms(200)
            q.put({"n": 1})
    run_threads(role, 2)
    q.close()
    assert got[0] is not None and got[0][1] == {"n": 1}
    assert 150 <= got[1] < 30000, got[1]  # woken by the put, well before the 60 s timeout


def test_get_with_a_timeout_returns_none_after_about_the_timeout():
    with MiniQueue.open(scratch()) as q:
        assert q.get() is None  # the default never blocks
        start = shim.ticks_ms()
        assert q.get(timeout=0.3) is None
        assert 280 <= _elapsed_ms(start) < 2500
        start = shim.ticks_ms()
        assert q.get(timeout=0) is None and _elapsed_ms(start) < 200
        for bad in (-1, "1", True, 86401):
            raises(ValueError, q.get, timeout=bad)
        mid = q.put("ready")
        assert q.get(timeout=5) == (mid, "ready")  # a ready message: no wait at all


def test_close_wakes_a_getter_that_waits():
    if not has_threads():
        return
    q = MiniQueue.open(scratch())
    seen = [None, None]

    def role(i):
        if i == 0:
            start = shim.ticks_ms()
            try:
                q.get(timeout=5)
            except ClosedError as exc:
                seen[0] = exc
            seen[1] = _elapsed_ms(start)
        else:
            shim.sleep_ms(200)
            q.close()
    run_threads(role, 2)
    assert isinstance(seen[0], ClosedError) and seen[1] < 2500, seen


def test_nack_with_a_delay_holds_the_message_back_until_its_time():
    d = scratch()
    with MiniQueue.open(d) as q:
        first, second = q.put_many(["a", "b"])
        assert q.get() == (first, "a")
        start = shim.ticks_ms()  # before the nack, which sets when the message is due
        q.nack(first, delay=0.3)
        assert q.delayed() == 1 and len(q) == 1 and "delayed=1" in repr(q)
        assert q.get() == (second, "b")  # the delayed one is not ready yet
        assert q.get() is None and q.peek() is None
        assert q.get(timeout=60) == (first, "a")  # get(timeout) waits for it
        assert 290 <= _elapsed_ms(start) < 30000  # not before its time (ms ticks: 1 ms of rounding)
        assert q.deliveries(first) == 2 and q.delayed() == 0
        q.nack(first, delay=0)  # no delay: back at its place at once
        assert q.peek() == (first, "a")
        raises(ValueError, q.nack, second, delay=-1)
        raises(ValueError, q.nack, second, delay=86401)


def test_a_delay_does_not_survive_a_restart():
    # Kept in RAM only (FORMAT.md 5.2): a restart delivers the message at once, as
    # at-least-once allows; the nack itself is in the journal.
    d = scratch()
    with MiniQueue.open(d) as q:
        mid = q.put("x")
        q.get()
        q.nack(mid, delay=3600)
        assert q.get() is None
    with MiniQueue.open(d) as q:
        assert q.get() == (mid, "x") and q.deliveries(mid) == 2


def test_retry_backoff_grows_with_the_deliveries_up_to_retry_max():
    assert [backoff(1, 2.0, 600, n) for n in (1, 2, 3, 4)] == [1, 2.0, 4.0, 8.0]
    assert backoff(1, 2.0, 600, 100000) == 600  # capped, and no overflow on the way
    assert backoff(0, 2.0, 600, 50) == 0 and backoff(5, 1, 600, 50) == 5
    d = scratch()
    with MiniQueue.open(d, retry_delay=0.1, retry_backoff=3, retry_max=0.25) as q:
        mid = q.put("m")
        assert q.get()[0] == mid
        q.nack(mid)  # 1st delivery: 0.1 s
        assert q.get() is None and q.delayed() == 1
        assert q.get(timeout=5)[0] == mid
        start = shim.ticks_ms()  # before the nack, which sets when the message is due
        q.nack(mid)  # 2nd: 0.3 s, capped at 0.25 s
        assert q.get(timeout=60)[0] == mid
        assert 240 <= _elapsed_ms(start) < 30000  # capped, and not before its time
    with MiniQueue.open(d) as q:  # the default: no delay
        q.nack(q.get()[0])
        assert q.delayed() == 0 and q.get() is not None
    for bad in ({"retry_delay": -1}, {"retry_max": 86401}, {"retry_backoff": 0.5}, {"retry_backoff": "2"}):
        raises(ValueError, MiniQueue.open, scratch(), **bad)


def _asyncio():
    try:
        import asyncio
        return asyncio
    except ImportError:
        return None


def test_aget_waits_for_a_put_from_another_task():
    asyncio = _asyncio()
    if asyncio is None:
        return
    q = MiniQueue.open(scratch())
    out = []

    async def producer():
        await asyncio.sleep(0.2)
        q.put({"n": 2})

    async def main():
        task = asyncio.create_task(producer())
        start = shim.ticks_ms()
        out.append(await q.aget(timeout=5))
        out.append(_elapsed_ms(start))
        await task
        start = shim.ticks_ms()
        out.append(await q.aget(timeout=0.2))  # empty: None after the timeout
        out.append(_elapsed_ms(start))
        mid = q.put("later")
        assert (await q.aget()) == (mid, "later")
        q.nack(mid, delay=0.2)
        out.append(await q.aget())  # no timeout: waits for the delay to pass
    asyncio.run(main())
    q.close()
    assert out[0][1] == {"n": 2} and 150 <= out[1] < 2500, out
    assert out[2] is None and 180 <= out[3] < 2500, out
    assert out[4][1] == "later"


def test_aget_of_another_loop_and_a_closed_queue():
    asyncio = _asyncio()
    if asyncio is None:
        return
    q = MiniQueue.open(scratch())
    mid = q.put(1)

    async def take():
        return await q.aget(timeout=1)
    assert asyncio.run(take()) == (mid, 1)
    q.put(2)
    assert asyncio.run(take())[1] == 2  # a second event loop: a fresh Event for it
    q.close()
    raises(ClosedError, asyncio.run, take())


def _hold_syncs(q):
    """Make the syncs of q's journal wait until the test releases `gate`: (gate, entered,
    put_back). `entered` fills once a sync is waiting; put_back() restores the sync."""
    journal = q._log.store._file
    real_sync = journal.sync
    gate = shim.allocate_lock()
    gate.acquire()
    entered = []

    def slow_sync():
        entered.append(1)
        gate.acquire()  # until the test has looked
        gate.release()
        real_sync()
    journal.sync = slow_sync

    def put_back():
        journal.sync = real_sync
    return gate, entered, put_back


def test_a_put_is_not_delivered_before_its_sync_returns():
    # Group commit: the put writes under the queue's lock and syncs outside it. Until
    # that sync returns, get() and peek() must not hand the message out: a crash
    # could lose it and reuse its id.
    if not has_threads():
        return
    q = MiniQueue.open(scratch())
    gate, entered, put_back = _hold_syncs(q)
    seen = []

    def role(i):
        if i == 0:
            seen.append(q.put("x"))
        else:
            while not entered:
                shim.sleep_ms(5)
            seen.append((q.get(), q.peek(), len(q)))
            gate.release()
    run_threads(role, 2)
    put_back()
    looked = [s for s in seen if isinstance(s, tuple)][0]
    mid = [s for s in seen if not isinstance(s, tuple)][0]
    assert looked == (None, None, 1), looked
    assert q.get() == (mid, "x")
    q.close()


def test_a_get_that_looks_while_a_put_syncs_is_woken_when_the_sync_ends():
    # The put's sync ends after get(timeout) looked (nothing durable yet) and before it
    # started waiting. The putter looked for waiters without the queue's lock, found
    # none, and the getter slept out its whole timeout with the message ready.
    if not has_threads():
        return
    import miniwait
    q = MiniQueue.open(scratch())
    real_wait_ms = miniwait._wait_ms
    gate, entered, put_back = _hold_syncs(q)

    def between_look_and_wait(queue, deadline):  # blocking_get calls it there, under the lock
        if gate.locked():
            gate.release()  # the sync ends now
            shim.sleep_ms(300)  # time for the putter to return and look for waiters
        return real_wait_ms(queue, deadline)
    miniwait._wait_ms = between_look_and_wait
    got = []
    try:
        def role(i):
            if i == 0:
                q.put("x")
            else:
                while not entered:
                    shim.sleep_ms(5)
                start = shim.ticks_ms()
                got.append(q.get(timeout=4))
                got.append(_elapsed_ms(start))
        run_threads(role, 2)
    finally:
        put_back()
        miniwait._wait_ms = real_wait_ms
    q.close()
    assert got[0] is not None and got[0][1] == "x", got
    assert got[1] < 2500, got  # woken when the sync ended, not at the 4 s timeout


def test_producer_threads_share_syncs_and_lose_nothing():
    if not has_threads():
        return
    d = scratch()
    q = MiniQueue.open(d, max_bytes=1 << 20, compact_bytes=2048)  # compactions while they put
    per_thread = [[] for _ in range(8)]

    def producer(t):
        for i in range(15):
            if i % 5 == 4:
                per_thread[t].extend(q.put_many([[t, i, 0], [t, i, 1]]))
            else:
                per_thread[t].append(q.put([t, i]))
    run_threads(producer, 8)
    ids = sorted(mid for mine in per_thread for mid in mine)
    assert len(set(ids)) == 8 * 18
    got = []
    for mid, message in q:
        got.append(mid)
        q.ack(mid)
    assert got == ids  # FIFO by id, every put delivered once
    q.close()
    with MiniQueue.open(d) as again:
        assert len(again) == 0 and again.in_flight() == 0


def test_aget_is_woken_by_a_put_from_another_thread_on_cpython():
    # MicroPython's asyncio is not thread-safe: there aget() is for tasks of its own loop.
    asyncio = _asyncio()
    if asyncio is None or MICROPYTHON:
        return
    import threading
    q = MiniQueue.open(scratch())
    timer = threading.Timer(0.2, q.put, args=("from a thread",))

    async def main():
        timer.start()
        start = shim.ticks_ms()
        item = await q.aget(timeout=5)
        return item, _elapsed_ms(start)
    item, waited = asyncio.run(main())
    timer.join()
    q.close()
    assert item[1] == "from a thread" and 150 <= waited < 2500, (item, waited)


def test_aget_in_two_event_loops_at_once_both_are_woken_on_cpython():
    # One Event was kept, the newest loop's: a put or close() woke only that loop, and the
    # other waited out its timeout (for ever with timeout=None, even after close()).
    asyncio = _asyncio()
    if asyncio is None or MICROPYTHON:
        return
    import threading
    q = MiniQueue.open(scratch())
    got = {}
    waiting = []

    def loop_thread(name, timeout):
        async def main():
            start = shim.ticks_ms()
            waiting.append(name)
            try:
                got[name] = (await q.aget(timeout=timeout))[1], _elapsed_ms(start)
            except ClosedError:
                got[name] = "closed", _elapsed_ms(start)
        asyncio.run(main())

    for timeout, wake in ((5, lambda: (q.put("m1"), q.put("m2"))), (None, q.close)):
        got.clear()
        del waiting[:]
        threads = [threading.Thread(target=loop_thread, args=(name, timeout), daemon=True) for name in ("a", "b")]
        for t in threads:
            t.start()
        while len(waiting) < 2:
            shim.sleep_ms(5)
        shim.sleep_ms(200)  # both are waiting in aget()
        wake()
        for t in threads:
            t.join(10)
        assert len(got) == 2 and all(waited < 2500 for _, waited in got.values()), got
        if timeout is None:
            assert got["a"][0] == got["b"][0] == "closed", got
        else:
            assert sorted(m for m, _ in got.values()) == ["m1", "m2"], got
