"""Random traffic on queues in small flash regions (CPython; tests/core/test_region_queue_room.py
is the short version for both runtimes): puts faster than gets and acks, or as fast, with nacks
and reopens, every geometry from 6 sectors of 2 KiB to 16 of 4 KiB (fewer than 6 keep room for no message), under on_full "reject"
and "drop_oldest", and max_bytes far larger than the region. No call may meet RegionFull or a
closed queue, and what is delivered is what was put. Before the region kept room for a
checkpoint (a28c94c), 21 of these 24 tests failed: RegionFull, or a queue closed by a
compaction that found no room."""
import os
import random
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "mp"))
import blockdev  # noqa: E402
from miniqueue import MiniQueue, QueueFull  # noqa: E402

GEOMETRIES = [(6, 2048), (6, 4096), (7, 2048), (8, 2048), (8, 4096), (10, 2048), (12, 4096), (16, 4096)]


def traffic(tmp, seed, sectors, sector, on_full, put_share, max_bytes, longest, steps=1500):
    rng = random.Random(seed)
    flash = blockdev.RAMFlash(sector, sectors)
    options = dict(max_bytes=max_bytes, region=flash, on_full=on_full)
    q = MiniQueue.open(tmp, **options)
    live = {}
    flight = set()
    refused = 0
    for step in range(steps):
        r = rng.random()
        where = "step %d (%d sectors of %d, seed %d)" % (step, sectors, sector, seed)
        if r < put_share:
            message = "x" * rng.randint(1, longest)
            try:
                live[q.put(message)] = message
            except QueueFull:
                refused += 1
        elif r < put_share + 0.3:
            item = q.get()
            if item is not None:
                if on_full == "reject":
                    assert live[item[0]] == item[1], where
                flight.add(item[0])
        elif r < 0.93:
            if flight:
                mid = rng.choice(sorted(flight))
                q.ack(mid)
                flight.discard(mid)
                live.pop(mid, None)
        elif r < 0.97:
            if flight:
                mid = rng.choice(sorted(flight))
                q.nack(mid)
                flight.discard(mid)
        else:
            q.close()
            q = MiniQueue.open(tmp, **options)
            flight.clear()
        if on_full == "reject":
            assert len(q._ix) == len(live), where
    q.close()
    return refused


@pytest.mark.parametrize("on_full", ["reject", "drop_oldest"])
@pytest.mark.parametrize("sectors,sector", GEOMETRIES)
def test_puts_ahead_of_the_consumer_never_fill_the_region(tmp_path, sectors, sector, on_full):
    for seed, longest in ((1, 40), (2, 300)):
        refused = traffic(str(tmp_path / str(seed)), seed, sectors, sector, on_full, 0.45, 1 << 20, longest)
        if on_full == "reject":
            assert refused > 0  # the region, not max_bytes, is what refused them


@pytest.mark.parametrize("sectors,sector", GEOMETRIES)
def test_balanced_traffic_with_a_small_max_bytes_never_fills_the_region(tmp_path, sectors, sector):
    for seed, longest in ((3, 40), (4, 300)):
        traffic(str(tmp_path / str(seed)), seed, sectors, sector, "reject", 0.30, 2000, longest)
