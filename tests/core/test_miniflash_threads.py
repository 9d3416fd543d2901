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
from support import appender, scratch, raises, run_threads, has_threads
import flashsweep
import minishim
from miniflash import Region, SubDevice
from ministore import MiniStore, LockedError
from ministate import StateManager
from test_threads import Add
from miniqueue import MiniQueue

SECTOR = 4096
THREADS = 4


def flash(sectors=8):
    return flashsweep.WatchedFlash(SECTOR, sectors)


def run_racing(target):
    """run_threads(target, THREADS), on CPython switching threads every microsecond (not
    every 5 ms) so that races show. MicroPython's unix port has no GIL: they show anyway."""
    if support.MICROPYTHON:
        run_threads(target, THREADS)
        return
    import sys
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        run_threads(target, THREADS)
    finally:
        sys.setswitchinterval(before)


def test_threads_appending_to_one_region_get_unique_seqs_in_order_and_lose_nothing():
    if not has_threads():
        return
    for sync in ("always", 3):
        dev = flash(16)
        store = MiniStore.open(Region(dev, retain=None), sync=sync)
        per_thread = [[] for _ in range(THREADS)]
        run_racing(appender(store, per_thread, pad="x" * 60, sync_every=13))
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
    run_racing(opener)
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


def test_threads_applying_to_a_state_go_round_a_small_region_by_snapshot_bytes():
    # 4 sectors hold about 40 of these records: the ring goes round only if each automatic
    # snapshot (counted by the store's appended bytes) releases what it covers.
    if not has_threads():
        return
    d = scratch()
    dev = flash(4)
    sm = StateManager.open(d, initial={}, mutators=[Add], snapshot_every=None, snapshot_bytes=3000, keep=2,
                           region=dev)

    def worker(t):
        for i in range(60):
            sm.apply(Add("t%d %s" % (t, "x" * 300), 1))
    run_threads(worker, THREADS)
    with sm.lock:
        live = dict(sm.state)
    sm.close()
    assert live == dict(("t%d %s" % (t, "x" * 300), 60) for t in range(THREADS))
    assert min(dev.block_erases) >= 3 and dev.violations == 0
    with StateManager.open(d, initial={}, mutators=[Add], region=dev) as again:
        assert again.state == live and again.seq == THREADS * 60


def test_threads_that_put_and_take_go_round_a_small_region():
    # Each thread puts a message, then takes one (any thread's) and acks it: a get never
    # finds the queue empty. 40 KB of messages through 6 sectors: only compaction frees them.
    if not has_threads():
        return
    d = scratch()
    dev = flash(6)
    q = MiniQueue.open(d, max_bytes=64 * 1024, compact_bytes=2000, region=dev)
    taken = [[] for _ in range(THREADS)]

    def worker(t):
        for i in range(50):
            q.put({"t": t, "i": i, "pad": "y" * 150})
            mid, message = q.get()
            q.ack(mid)
            taken[t].append((message["t"], message["i"]))
    run_threads(worker, THREADS)
    assert len(q) == 0 and q.in_flight() == 0
    q.close()
    got = sorted(m for mine in taken for m in mine)
    assert got == sorted((t, i) for t in range(THREADS) for i in range(50))
    assert min(dev.block_erases) >= 2 and dev.violations == 0
    with MiniQueue.open(d, region=dev) as again:
        assert again.get() is None
