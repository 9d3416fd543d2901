# A flash region has one writer, and its writer may be shared by threads (README
# "Threads"), as a journal file: every FlashStore method holds the store's lock, and
# the region is entered in the writers' registry (minishim._held) by the flash bytes it
# covers, so a second writer on any of them gets LockedError however it is spelled.
# Each test reopens what the threads wrote and checks exact counts; the NOR device
# counts every program that writes over bytes already written (two writers would collide).
import os

try:
    import blockdev
except ImportError:  # CPython: pytest puts tests/core on the path, not tests/mp
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mp"))
    import blockdev

import support
from support import scratch, raises, run_threads, has_threads
import flashsweep
import minishim
from miniflash import Region, SubDevice
from ministore import MiniStore, LockedError
from ministate import StateManager, Mutator
from miniqueue import MiniQueue

SECTOR = 4096
THREADS = 4


def flash(sectors=8):
    return flashsweep.WatchedFlash(SECTOR, sectors)


def switch_often():
    """On CPython, switch threads every microsecond (not every 5 ms) so that races show;
    returns what to restore. MicroPython's unix port has no GIL: they show anyway."""
    if support.MICROPYTHON:
        return None
    import sys
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    return before


def restore(before):
    if before is not None:
        import sys
        sys.setswitchinterval(before)


class Add(Mutator):
    def __init__(self, key, by):
        self.key = key
        self.by = by

    def apply(self, state):
        state[self.key] = state.get(self.key, 0) + self.by


def test_threads_appending_to_one_region_get_unique_seqs_in_order_and_lose_nothing():
    if not has_threads():
        return
    for sync in ("always", 3):
        dev = flash(16)
        store = MiniStore.open(Region(dev, retain=None), sync=sync)
        per_thread = [[] for _ in range(THREADS)]  # one list per thread (no GIL on some ports)

        def writer(t):
            seqs = per_thread[t]
            for i in range(40):
                if i % 10 == 9:
                    last = store.append_many([[t, i, 0], [t, i, 1], [t, i, 2]])
                    seqs.extend([last - 2, last - 1, last])
                else:
                    seqs.append(store.append([t, i, "x" * 60]))
                if i % 13 == 0:
                    store.sync()
        before = switch_often()
        try:
            run_threads(writer, THREADS)
        finally:
            restore(before)
        store.close()
        expected = THREADS * (36 + 4 * 3)
        assert sorted(s for mine in per_thread for s in mine) == list(range(1, expected + 1))
        for mine in per_thread:
            assert mine == sorted(mine)  # each thread's records in the order it appended them
        read = list(MiniStore.stream(dev))
        assert [seq for seq, _ in read] == list(range(1, expected + 1))
        for t in range(THREADS):
            mine = [(seq, rec) for seq, rec in read if rec[0] == t]
            assert [seq for seq, _ in mine] == per_thread[t]
            assert [rec[1] for _, rec in mine if rec[2] not in (1, 2)] == list(range(40))
        assert dev.violations == 0
        with MiniStore.open(dev) as again:
            assert again.seq == expected


def test_threads_racing_to_open_one_region_take_turns():
    if not has_threads():
        return
    dev = flash(8)
    won = [[] for _ in range(THREADS)]
    refused = [0] * THREADS
    spellings = [lambda: dev, lambda: Region(dev), lambda: Region(dev, retain=0),
                 lambda: Region(SubDevice(dev, 0, 8))]

    def opener(t):
        for i in range(30):
            try:
                store = MiniStore.open(spellings[t % len(spellings)]())
            except LockedError:
                refused[t] += 1
                continue
            try:
                won[t].append(store.append({"t": t, "i": i}))
            finally:
                store.close()
    before = switch_often()
    try:
        run_threads(opener, THREADS)
    finally:
        restore(before)
    seqs = sorted(s for mine in won for s in mine)
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) + sum(refused) == THREADS * 30
    back = MiniStore.replay(dev)
    assert back.seq == len(seqs) and back.torn is None
    assert dev.violations == 0
    assert not minishim._held


class Partition:
    """What esp32.Partition is to the journal: a view of the chip's flash that says where it is
    (info()), of which MicroPython makes a new object each time one is asked for."""

    def __init__(self, chip, first_block, blocks):
        self.chip = SubDevice(chip, first_block, blocks)
        self.address = first_block * SECTOR

    def info(self):
        return (1, 0x81, self.address, self.chip.count * SECTOR, "log", False)

    def readblocks(self, block, buf, offset=0):
        self.chip.readblocks(block, buf, offset)

    def writeblocks(self, block, buf, offset=None):
        self.chip.writeblocks(block, buf, offset)

    def ioctl(self, op, arg):
        return self.chip.ioctl(op, arg)


def test_a_second_writer_is_refused_however_the_region_is_spelled():
    dev = flash(16)
    with MiniStore.open(Region(dev, start=4, sectors=4)):
        for other in (Region(dev, start=4, sectors=4), Region(dev, start=2, sectors=3),
                      Region(dev, start=7, sectors=2), Region(dev), Region(SubDevice(dev, 4, 4)),
                      Region(SubDevice(dev, 2, 10), start=3, sectors=2)):
            raises(LockedError, MiniStore.open, other)
            raises(LockedError, MiniQueue.open, scratch(), region=other)
            raises(LockedError, StateManager.open, scratch(), initial={}, region=other)
        # Bytes that do not overlap are another region: both have a writer.
        with MiniStore.open(Region(dev, start=8, sectors=2)) as next_door:
            next_door.append("next door")
        with MiniStore.open(Region(SubDevice(dev, 0, 4))) as before:
            before.append("before")
    chip = flash(16)
    with MiniStore.open(Partition(chip, 8, 4)):
        raises(LockedError, MiniStore.open, Partition(chip, 8, 4))  # the same partition, asked for again
        raises(LockedError, MiniStore.open, Region(Partition(chip, 6, 8), start=2, sectors=2))
        MiniStore.open(Partition(chip, 4, 4)).close()  # the partition before it
    assert not minishim._held
    d = scratch()
    with StateManager.open(d, initial={}, region=Region(dev, start=4, sectors=4)):
        raises(LockedError, MiniQueue.open, scratch(), region=Region(dev, start=4, sectors=2))
    assert not minishim._held


def test_a_region_store_dropped_unclosed_lets_the_region_go_on_cpython():
    if support.MICROPYTHON:
        return  # no finalizers: a writer dropped unclosed keeps its region held (README)
    import gc
    dev = flash(4)
    store = MiniStore.open(dev)
    store.append(1)
    raises(LockedError, MiniStore.open, dev)
    del store
    gc.collect()
    with MiniStore.open(dev) as store:
        assert store.seq == 1


def test_threads_applying_to_a_state_on_a_region_reopen_to_the_same_state():
    if not has_threads():
        return
    d = scratch()
    dev = flash(8)
    sm = StateManager.open(d, initial={}, mutators=[Add], snapshot_every=7, keep=2, region=dev)

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
    with StateManager.open(d, initial={}, mutators=[Add], region=dev) as again:
        assert again.state == live
    assert dev.violations == 0


def test_producer_and_consumer_threads_share_a_queue_on_a_region():
    if not has_threads():
        return
    d = scratch()
    dev = flash(8)
    q = MiniQueue.open(d, max_bytes=64 * 1024, compact_bytes=600, region=dev)
    produced = 2 * 60
    acked_by = [[] for _ in range(THREADS)]

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
            q.ack(got[0])
            acked.append(got[0])
    run_threads(worker, THREADS)
    acked = [mid for mine in acked_by for mid in mine]
    left = len(q) + q.in_flight()
    q.close()
    assert len(acked) == len(set(acked)) and len(acked) + left == produced
    with MiniQueue.open(d, region=dev) as again:
        rest = []
        got = again.get()
        while got is not None:
            rest.append(got[0])
            again.ack(got[0])
            got = again.get()
    assert sorted(acked + rest) == sorted(set(acked + rest)) and len(acked) + len(rest) == produced
    assert dev.violations == 0
