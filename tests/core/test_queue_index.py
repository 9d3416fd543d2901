# The queue's index of live messages in RAM (minimessages._Index: pages of 64 slots,
# short bodies in a page buffer), on CPython and MicroPython (tests/mp/runner.py).
# A seeded run of random operations against a plain model, across page ends, packing,
# drops, dead letters, compactions and reopens; and the bounds on what the index keeps.
from support import Rng, scratch, raises
import minishim
from miniqueue import MiniQueue, UnknownMessage, READY, IN_FLIGHT, DEAD


def body_bytes(message):
    return len(minishim.dumps(message).encode())


class Model:
    def __init__(self, max_bytes, max_deliveries):
        self.msgs = {}  # id -> [message, deliveries, status]
        self.max_bytes = max_bytes
        self.max_deliveries = max_deliveries
        self.dropped = 0
        self.delayed = set()  # nacked with a delay that does not end during the test

    def ready(self):
        return sorted(mid for mid in self.msgs if self.msgs[mid][2] == READY and mid not in self.delayed)

    def of(self, status):
        return sorted(mid for mid in self.msgs if self.msgs[mid][2] == status)

    def size(self):
        return sum(body_bytes(self.msgs[mid][0]) for mid in self.msgs)

    def put(self, mid, message):
        need = body_bytes(message)
        for old in self.ready():  # drop_oldest: the oldest ready ones first
            if self.size() + need <= self.max_bytes:
                break
            del self.msgs[old]
            self.dropped += 1
        self.msgs[mid] = [message, 0, READY]

    def get(self):
        for mid in self.ready():
            entry = self.msgs[mid]
            if entry[1] >= self.max_deliveries:
                entry[2] = DEAD
                continue
            entry[1] += 1
            entry[2] = IN_FLIGHT
            return mid, entry[0]
        return None

    def reopen(self):
        self.delayed = set()  # delays live in RAM only: ready again after a restart
        for mid in self.msgs:
            if self.msgs[mid][2] == IN_FLIGHT:
                self.msgs[mid][2] = READY


def message_for(rng, i):
    kind = rng.below(10)
    if kind == 0:
        return {"i": i, "long": "x" * (240 + rng.below(40))}  # either side of the 255-byte short body
    if kind == 1:
        return {"i": i, "mid": "y" * rng.below(120)}
    return {"i": i}


def check(q, model, where):
    assert len(q) == len(model.ready()), (where, len(q), len(model.ready()))
    assert q._ready_ids() == model.ready(), where
    assert q.in_flight() == len(model.of(IN_FLIGHT)), where
    assert q.delayed() == len(model.delayed), where
    assert q.live_bytes() == model.size(), (where, q.live_bytes(), model.size())
    assert q.dropped == model.dropped, where
    # q._entries(), a slot at a time: a dict of every body beside the model's did not fit
    # the 192 KB board's heap (MemoryError, tests/test_mcu.py)
    ix = q._ix
    ids = []
    for p in ix.slots():
        mid = ix.id_at(p)
        ids.append(mid)
        want = model.msgs[mid]
        assert (minishim.loads(ix.body_at(p)), ix.counts.get(mid, 0), ix.status_at(p)) == (
            want[0], want[1], want[2]), (where, mid)
    assert sorted(ids) == sorted(model.msgs), where
    assert [(mid, m, d) for mid, m, d in q.dead()] == [
        (mid, model.msgs[mid][0], model.msgs[mid][1]) for mid in model.of(DEAD)], where


def run_random(seed, steps):
    rng = Rng(seed)
    d = scratch()
    opts = dict(max_bytes=6000, on_full="drop_oldest", max_deliveries=3, compact_bytes=8000, sync=16)
    q = MiniQueue.open(d, **opts)
    model = Model(6000, 3)
    i = 0
    for step in range(steps):
        r = rng.below(100)
        in_flight = model.of(IN_FLIGHT)
        put_below = 70 if step < 150 else (40 if step < steps // 2 else 12)  # fill, churn, then drain
        if r < put_below:
            message = message_for(rng, i)
            i += 1
            mid = q.put(message)
            model.put(mid, message)
        elif r < 62 or (r < 70 and put_below < 70):
            assert q.get() == model.get(), step
        elif r < 78 and in_flight:
            mid = in_flight[rng.below(len(in_flight))]  # not only the oldest: acks out of order
            q.ack(mid)
            del model.msgs[mid]
        elif r < 88 and in_flight:
            mid = in_flight[rng.below(len(in_flight))]
            if rng.below(4) == 0:
                q.nack(mid, delay=3600)  # held back past the end of the test
                model.delayed.add(mid)
            else:
                q.nack(mid)
            model.msgs[mid][2] = READY
        elif r < 91 and in_flight:
            mid = in_flight[rng.below(len(in_flight))]
            q.dead_letter(mid)
            model.msgs[mid][2] = DEAD
        elif r < 93:
            assert q.purge_dead() == len(model.of(DEAD))
            for mid in model.of(DEAD):
                del model.msgs[mid]
        elif r < 95:
            q.compact()
        elif r < 97:
            q.close()
            q = MiniQueue.open(d, **opts)
            model.reopen()
        if step % 25 == 0:
            check(q, model, step)
    check(q, model, "end")
    # Drain: deliver 20 at a time, ack each 20 in a scrambled order (the index packs).
    while True:
        batch = []
        for _ in range(20):
            item = q.get()
            assert item == model.get()
            if item is None:
                break
            batch.append(item[0])
        if not batch:
            break
        while batch:
            mid = batch.pop(rng.below(len(batch)))
            q.ack(mid)
            del model.msgs[mid]
        check(q, model, "drain")
    q.close()
    q = MiniQueue.open(d, **opts)
    model.reopen()
    check(q, model, "reopened")
    q.close()


def test_random_operations_match_a_plain_model():
    run_random(7, 700)


def test_random_operations_match_a_plain_model_other_seed():
    run_random(2026, 700)


def test_a_dead_letter_at_the_head_does_not_hold_the_pages_after_it():
    q = MiniQueue.open(scratch(), sync=64, compact_bytes=4096)
    q.put("stuck")
    q.dead_letter(q.get()[0])
    for i in range(700):
        q.put(i)
        mid, message = q.get()
        assert message == i
        q.ack(mid)
    ix = q._ix
    assert len(ix) == 1 and len(q.dead()) == 1
    assert len(ix.id_pages) <= 2, len(ix.id_pages)  # packed: not one page per 64 acks
    q.close()


def test_acks_in_reverse_order_free_the_pages():
    q = MiniQueue.open(scratch(), sync=256, compact_bytes=4096)
    ids = q.put_many(list(range(300)))
    got = [q.get() for _ in range(300)]
    assert [m for _, m in got] == list(range(300))
    for mid in reversed(ids[1:]):
        q.ack(mid)
    ix = q._ix
    assert len(ix) == 1 and len(ix.id_pages) == 1, len(ix.id_pages)
    q.ack(ids[0])
    assert len(ix) == 0 and len(ix.id_pages) <= 1 and q.live_bytes() == 0
    mid = q.put("after")
    assert q.get() == (mid, "after")
    q.close()


def test_bodies_either_side_of_the_page_buffer_limits():
    q = MiniQueue.open(scratch(), sync=64)
    # 255 bytes: in the page buffer; 256: kept as it is; five of 250 fill the 1 KB buffer.
    messages = ["a" * 253, "b" * 254, "c" * 248, "d" * 248, "e" * 248, "f" * 248, "g" * 10]
    ids = q.put_many(messages)
    assert [body_bytes(m) for m in messages[:3]] == [255, 256, 250]
    assert q.live_bytes() == sum(body_bytes(m) for m in messages)
    assert [q.get() for _ in messages] == list(zip(ids, messages))
    q.nack(ids[3])
    q.ack(ids[0])
    assert q.get() == (ids[3], messages[3]) and q.live_bytes() == sum(body_bytes(m) for m in messages[1:])
    q.close()


def test_a_delayed_message_stays_held_back_when_the_index_packs():
    q = MiniQueue.open(scratch(), sync=256, compact_bytes=4096)
    ids = q.put_many(list(range(100)))
    assert [q.get()[1] for _ in range(100)] == list(range(100))
    q.nack(ids[0], delay=3600)
    q.ack(ids[50])
    assert raises(UnknownMessage, q.deliveries, ids[50])  # an acked message's slot is not found again
    for mid in reversed(ids[1:]):  # out of order: more slots gone than live, so the index packs
        if mid != ids[50]:
            q.ack(mid)
    assert raises(UnknownMessage, q.ack, ids[99])
    assert len(q._ix.id_pages) == 1 and q.delayed() == 1 and len(q) == 0
    mid = q.put("new")
    assert q.get() == (mid, "new") and q.get() is None  # not the delayed one
    assert q.deliveries(ids[0]) == 1
    q.close()
