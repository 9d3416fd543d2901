# A queue on a flash region keeps room for a checkpoint of its messages (FORMAT.md 6.5):
# a put that would take it raises QueueFull (or drops, under drop_oldest), and a get, ack
# or nack, a compaction and a reopen always find room. Before 2026-12-05 a queue whose
# messages filled the region (the default max_bytes, 64 KiB, in a 16 KiB region) raised
# RegionFull at its first get, at this boot and every later one: nothing could be
# delivered again, nor acked. Both runtimes.
import os

try:
    import blockdev
except ImportError:  # CPython: pytest puts tests/core on the path, not tests/mp
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mp"))
    import blockdev

import support
from support import scratch, raises
import miniflash
from miniqueue import MiniQueue, QueueFull


def fill(q, pad):
    ids = []
    while True:
        try:
            ids.append(q.put("m%d-%s" % (len(ids), "x" * pad)))
        except QueueFull:
            return ids


def test_a_queue_that_fills_its_region_can_still_be_drained_and_refilled():
    for sectors, sector, pad in ((6, 4096, 100), (7, 2048, 10), (10, 2048, 300)):
        d = scratch()
        flash = blockdev.RAMFlash(sector, sectors)
        q = MiniQueue.open(d, region=flash)  # max_bytes: the default, larger than the region
        ids = fill(q, pad)
        assert len(ids) > 3, (sectors, sector, len(ids))
        raises(QueueFull, q.put, "m%d-%s" % (len(ids), "x" * pad))  # again: nothing changed meanwhile
        got = [q.get() for _ in range(len(ids) // 2)]  # every get is written
        for mid, _ in got[:3]:
            q.nack(mid)
        q.close()
        q = MiniQueue.open(d, region=flash)  # what was in flight is ready again
        assert len(q) == len(ids)
        seen = []
        while True:
            item = q.get()
            if item is None:
                break
            seen.append(item[0])
            q.ack(item[0])
        assert sorted(seen) == ids
        assert len(fill(q, pad)) >= len(ids) - 1  # the region is free again (a put or so may go to a new checkpoint)
        q.close()


def test_drop_oldest_on_a_full_region_drops_what_makes_room():
    d = scratch()
    flash = blockdev.RAMFlash(2048, 6)
    q = MiniQueue.open(d, region=flash, on_full="drop_oldest")
    last = 0
    for i in range(300):
        last = q.put({"i": i, "pad": "y" * 40})
    assert q.dropped > 0 and len(q) + q.dropped == 300
    first = q.get()
    assert first[1]["i"] == q.dropped  # the oldest ones went
    q.close()
    q = MiniQueue.open(d, region=flash, on_full="drop_oldest")
    assert len(q) + q.dropped >= 299 and q.get()[0] <= last
    q.close()


def test_random_traffic_on_small_regions_never_meets_a_full_region():
    for seed, (sectors, sector) in enumerate(((6, 2048), (8, 2048), (6, 4096))):
        rng = support.Rng(seed + 1)
        d = scratch()
        flash = blockdev.RAMFlash(sector, sectors)
        q = MiniQueue.open(d, region=flash)
        live = {}
        flight = []
        for step in range(600):
            r = rng.randint(0, 99)
            if r < 45:
                message = "x" * rng.randint(1, 120)
                try:
                    live[q.put(message)] = message
                except QueueFull:
                    pass
            elif r < 75:
                item = q.get()
                if item is not None:
                    assert live[item[0]] == item[1]
                    flight.append(item[0])
            elif r < 95:
                if flight:
                    mid = flight.pop(rng.randint(0, len(flight) - 1))
                    q.ack(mid)
                    del live[mid]
            else:
                q.close()
                q = MiniQueue.open(d, region=flash)
                flight = []
        assert len(q._ix) == len(live)
        q.close()


def test_a_region_of_fewer_than_6_sectors_keeps_room_for_no_message():
    # A checkpoint may take (sectors - 4) // 2 sectors (FORMAT.md 6.5): none in 4 or 5. The
    # queue opens (what an older version put there can be drained), and a put says why.
    for sectors in (4, 5):
        d = scratch()
        q = MiniQueue.open(d, region=blockdev.RAMFlash(4096, sectors))
        err = raises(QueueFull, q.put, "x")
        assert "region" in str(err)
        q.close()


def test_many_dead_letters_at_once_are_written_in_batches_a_sector_holds():
    # From helper-44's review: get() wrote every dead letter it passed over, and purge_dead()
    # every purge, as one batch; 60 of them (2.4 KB) did not fit a 2 KiB sector, the write
    # raised ValueError, the queue closed, and every boot did the same. Batches of 16 now,
    # which a 2 KiB sector holds with ids of 16 digits (a queue that ran long; 32 would not).
    for long_ids in (False, True):
        d = scratch()
        flash = blockdev.RAMFlash(2048, 12)
        if long_ids:
            with miniflash.FlashStore.open(flash, base_seq=10 ** 15) as store:
                store.append({"ckpt_end": {"messages": 0, "dropped": 0}})
        q = MiniQueue.open(d, region=flash, max_deliveries=1)
        count = 40 if long_ids else 60  # 40 lines of 16-digit ids: 3 KB (the room holds about 50)
        ids = [q.put(i) for i in range(count)]
        for mid in [q.get()[0] for _ in ids]:
            q.nack(mid)
        assert q.get() is None and len(q.dead()) == count  # the dead letters written on the way
        q.close()
        q = MiniQueue.open(d, region=flash, max_deliveries=1)
        assert len(q.dead()) == count
        assert q.purge_dead() == count
        after = q.put("after")
        q.close()
        q = MiniQueue.open(d, region=flash, max_deliveries=1)
        assert q.dead() == [] and q.get() == (after, "after")
        q.close()


def test_a_put_whose_drops_would_overflow_a_sector_is_queue_full_not_never():
    # From helper-44's review: under drop_oldest the drops go in the put's batch; when they
    # and the message did not fit a sector the put raised ValueError, which says "never".
    d = scratch()
    q = MiniQueue.open(d, max_bytes=3000, on_full="drop_oldest", region=blockdev.RAMFlash(2048, 8))
    for i in range(60):
        q.put(i)
    held, dropped = len(q), q.dropped
    err = raises(QueueFull, q.put, "x" * 1700)
    assert "drops" in str(err)
    assert len(q) == held and q.dropped == dropped and not q.closed  # nothing done
    while len(q) > 2:  # once most are taken and acked, few drops are needed: it fits
        q.ack(q.get()[0])
    q.put("x" * 1700)
    q.close()


def test_a_message_whose_checkpoint_would_pass_the_cap_is_refused():
    # From helper-43's mutants (region-bound-no-plus-1, region-plan-no-ckpt-end): on 8
    # sectors of 2 KiB the cap is 2 sectors of checkpoint; "s" and a 1,726-byte message
    # take a batch each (neither fits beside the other) and ckpt_end a third: refused.
    d = scratch()
    q = MiniQueue.open(d, region=blockdev.RAMFlash(2048, 8))
    q.put("s")
    raises(QueueFull, q.put, "b" * 1726)
    q.close()
