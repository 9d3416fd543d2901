# miniflash recovery tests: what an open finds after a cut, damage or foreign data
# (FORMAT.md 6.2, 6.3), on the flash-faithful NOR block device of tests/mp/blockdev.py.
# They run under pytest on CPython and under tests/mp/runner.py on the MicroPython unix port.
import os

try:
    import blockdev
except ImportError:  # CPython: pytest puts tests/core on the path, not tests/mp
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mp"))
    import blockdev

import support  # noqa: F401
from support import raises
import flashsweep
import minishim
from minishim import crc32
from miniflash import Region, FlashReader, header_line
from ministore import MiniStore, CorruptRecord, FormatError

SECTOR = 4096


def flash(sectors=4, prog=256):
    device = flashsweep.WatchedFlash(SECTOR, sectors)
    device.prog = prog
    return device


def crc(dev):
    """A CRC-32 of the whole flash, read through views: no 16 KB copy (the 128 KB board's heap)."""
    value = 0
    for at in range(0, len(dev.data), SECTOR):
        value = crc32(dev.mem[at:at + SECTOR], value)
    return value


def power_on(dev):
    """The flash of a device whose power was cut, powered on again, in place (dev.copy() is a
    copy on the heap): its bytes as the cut left them, every op landing from now on."""
    dev.cut_at, dev.dead, dev.mode, dev.after_cut = -1, False, "raise", None
    return dev


def test_a_write_cache_never_lands_a_record_without_its_sector_header():
    # A device whose write cache completes the ops since the last barrier in any order
    # (blockdev "reorder"): the first sync of sync=2 programs sector 0's header, then a
    # record, then erases sector 1 for the next record. With no barrier between the
    # header and the record, a cut at that erase could land the record and not the
    # header: sector 0 then read as foreign data and no open took the region (a review).
    # (The model used to replay a landed program as the bytes of its range after every
    # op, which brought the header back under the record's 0xFF: it hid this.)
    undone = 0
    for seed in range(1, 41):
        dev = flash(4)
        dev.mode, dev.cut_at, dev.after_cut, dev.reorder_seed = "reorder", 3, "lost", seed
        store = MiniStore.open(dev, sync=2)
        store.append({"small": "s" * 300})  # one program: bytes 0..511
        try:
            store.append({"big": "x" * 3700})  # does not fit after it: sector 1
            assert False, "the cut at op 3 (sector 1's erase) did not raise"
        except OSError:
            pass
        store._abandon()
        undone += dev.reordered
        image = power_on(dev)
        with MiniStore.open(image) as again:  # FormatError before the barrier
            assert again.seq in (0, 1), seed
            seq = again.append("after")
        assert MiniStore.replay(image)[-1] == "after" and MiniStore.replay(image).seq == seq
    assert undone  # the cache did drop ops


def test_a_base_seq_whose_header_would_not_fit_is_refused_before_writing():
    # base_seq=10**75 gave a 193-byte first header: the append was acknowledged, yet
    # a reader looks for the header in the first 192 bytes, so the next open took the
    # sector for foreign data (a review). Refused now, with nothing written.
    for base in (10 ** 20, 10 ** 75):
        dev = flash(4)
        raises(ValueError, MiniStore.open, dev, base_seq=base)
        assert dev.ops == 0 and not minishim._held
    # The largest base_seq allowed, with 20-digit sector numbers and erase counts, on the
    # largest geometry: the header still fits.
    class Big:
        sector_size = sectors = 65536
    assert len(header_line(Big, 10 ** 20 - 1, 10 ** 20 - 1, 10 ** 20 - 1)) < 192
    dev = flash(4)
    with MiniStore.open(dev, base_seq=10 ** 20 - 1) as store:
        assert store.append("x") == 10 ** 20
    with MiniStore.open(dev) as store:
        assert store.seq == 10 ** 20
    assert MiniStore.replay(dev) == ["x"]


def test_sector_0_must_read_as_a_prefix_of_the_first_header_this_open_writes():
    # Only the first bytes were compared with the header (up to "number"), so erased
    # bytes then someone's data within 192 bytes, or a header prefix then other bytes,
    # passed for a torn first header and were erased (a review).
    line = header_line(Region(flash(4)), 1, 1, 0)
    blob = b"CONFIG:key=1234567890;owner=someone-else\n"
    for at, head in ((100, b""), (70, line[:70]), (len(line) - 1, line[:-1])):
        dev = flash(4)
        dev.data[:len(head)] = head
        dev.data[at:at + len(blob)] = blob
        before = crc(dev)
        raises(FormatError, MiniStore.open, dev)
        assert crc(dev) == before and dev.ops == 0 and not minishim._held, at
    # The first header of another base_seq is not the one this open writes.
    dev = flash(4)
    other = header_line(Region(dev), 1, 1, 7)
    dev.data[:len(other) - 3] = other[:-3]
    raises(FormatError, MiniStore.open, dev)
    with MiniStore.open(dev, base_seq=7) as store:  # the open that tore it takes it
        assert store.append("x") == 8
    # A torn header: any prefix, its last written byte partly programmed, bytes in
    # between not programmed yet (a page's bits are programmed in parallel).
    for cut in (1, 60, len(line) - 1, len(line)):
        dev = flash(4)
        torn = bytearray(line[:cut])
        torn[cut // 2] = 0xFF
        torn[-1] |= 0x21
        dev.data[:cut] = torn
        with MiniStore.open(dev) as store:
            assert store.append("first") == 1
        assert MiniStore.replay(dev) == ["first"]


def _records(dev, n, region=None):
    with MiniStore.open(region or dev) as store:
        for i in range(1, n + 1):
            store.append({"i": i, "fill": "x" * 300})


def test_a_rotted_sector_header_is_corruption_not_free_space():
    # One flipped bit in the head's header: the sector read as free, its acknowledged
    # records vanished without an error, the next append reused their seqs and the
    # writer later erased them; in the oldest's, its records vanished (a review).
    dev = flash(4)
    _records(dev, 15)  # sector 0: seqs 1..11, sector 1 (the head): 12..15
    dev.data[SECTOR + 30] ^= 0x04
    before = crc(dev)
    err = raises(CorruptRecord, MiniStore.open, dev)
    assert "sector 1 holds records (seq 12) after a damaged sector header" in str(err), str(err)
    raises(CorruptRecord, lambda: list(MiniStore.stream(dev)))
    assert crc(dev) == before and not minishim._held
    dev = flash(4)
    _records(dev, 29)  # sectors 0, 1, 2
    dev.data[30] ^= 0x04
    before = crc(dev)
    raises(CorruptRecord, MiniStore.open, dev)
    assert crc(dev) == before and not minishim._held
    # A retire the power cut (the ring was full, the tail covered: its header partly
    # zeroed, its records still there) is the sector after the head: free, as before.
    dev = flash(3)
    _records(dev, 40, Region(dev, retain=0))
    reader = FlashReader(dev)
    list(reader)
    tail, last = reader.ring[0][0], reader.seq
    dev.data[tail * SECTOR:tail * SECTOR + 20] = b"\x00" * 20
    with MiniStore.open(Region(dev, retain=0)) as store:
        assert store.seq == last and store.append("next") == last + 1
    assert MiniStore.replay(dev)[-1] == "next"


def test_foreign_data_in_a_free_sector_of_a_journal_is_refused():
    # Foreign bytes in a sector the journal had not used yet were erased once the ring
    # reached it, where an empty region with the same bytes was refused (a review).
    blob = b"littlefs superblock / someone else's data\n"
    for at in (8, 300, SECTOR - 1):
        dev = flash(4)
        _records(dev, 15, Region(dev, retain=0))  # sectors 0 and 1; 2 is after the head
        dev.data[3 * SECTOR + at:3 * SECTOR + at + 1] = blob[:1]
        before = crc(dev)
        err = raises(FormatError, MiniStore.open, Region(dev, retain=0))
        assert "sector 3 holds data" in str(err) and crc(dev) == before and not minishim._held
        with MiniStore.open(Region(dev, retain=0, reformat=True)) as store:  # the way to take it anyway
            assert store.seq == 15
        assert Region(dev).written_end(3) == 0  # erased by that open
        with MiniStore.open(Region(dev, retain=0)) as store:  # so no flag is needed again
            assert store.append("x") == 16
    # The sector after the head may hold what a cut left there (an erase cut short of an
    # old sector, a torn header): taken and erased when the ring reaches it.
    dev = flash(4)
    _records(dev, 15)
    dev.data[2 * SECTOR:2 * SECTOR + 100] = b"\x00" * 50 + b'{"seq":3,"rec' + b"\xa5" * 37
    with MiniStore.open(dev) as store:
        for i in range(30):
            store.append(i)
    # A retired header (zeros, then erased bytes) is not foreign.
    dev = flash(4)
    _records(dev, 15)
    dev.data[3 * SECTOR:3 * SECTOR + 192] = b"\x00" * 192
    with MiniStore.open(dev) as store:
        assert store.append("x") == 16


def test_a_reader_the_writer_overtakes_is_told_it_fell_behind_not_corruption():
    # A reader beside the writer (no lock) still in the tail when the writer reused it
    # raised CorruptRecord "sequence gap" on a healthy journal (a review).
    from miniflash import FellBehind
    from ministore import MiniError
    assert issubclass(FellBehind, MiniError) and not issubclass(FellBehind, CorruptRecord)
    dev = flash(3)
    store = MiniStore.open(Region(dev, retain=0))
    try:
        n = 0
        while len(store._ring) < 3:
            n += 1
            store.append({"i": n, "fill": "x" * 300})
        reader = MiniStore.stream(Region(dev))
        assert next(iter(reader))[0] == 1
        while store._ring[0][0] == 0:  # the writer reuses sector 0, where the reader is
            n += 1
            store.append({"i": n, "fill": "x" * 300})
        err = raises(FellBehind, lambda: list(reader))
        assert "sector 0 was reused by the writer" in str(err), str(err)
        again = list(MiniStore.stream(Region(dev)))  # read again: the journal is sound
        assert again[-1][0] == n and [s for s, _ in again] == list(range(again[0][0], n + 1))
    finally:
        store.close()


def test_a_retain_the_packing_cannot_always_reach_is_refused():
    # Two sectors in a row hold more than sector size - 192 bytes of records: the
    # largest retain allowed is that times (sectors - 1) // 2. (sectors - 2) x ... was
    # allowed, and 2 KB records, one a sector, stalled such a ring log for good (a review).
    raises(ValueError, Region, flash(4), retain=SECTOR - 192 + 1)
    raises(ValueError, Region, flash(2), retain=1)
    dev = flash(4)
    with MiniStore.open(Region(dev, retain=SECTOR - 192)) as store:
        for i in range(100):
            store.append({"fill": "x" * 1960})  # one record a sector
    assert len(MiniStore.replay(dev)) >= 2


def _torn_empty_head():
    """A ring log (4 sectors, retain=3000) whose head (sector 2) holds a header and a torn record only."""
    dev = flash(4)
    with MiniStore.open(Region(dev, retain=3000)) as store:
        for i in range(10):
            store.append({"i": i, "fill": "x" * 350})  # sector 0 full, sector 1 begun
        while len(store._ring) < 3:
            store.append({"fill": "y" * 350})
        last = store._ring[-1]
    # the last record alone in sector 2: tear it (a program cut short)
    start = last[0] * SECTOR + store._pos - last[3]
    dev.data[start + 40:start + last[3]] = b"\xff" * (last[3] - 40)
    return dev, store.seq - 1


def test_a_torn_head_with_no_record_is_taken_again_not_a_sector_per_boot():
    # Each boot whose first append a cut tore started a new sector: a few such boots and
    # the sectors after the tail held less than retain, and the ring log raised
    # RegionFull for good (a review). A head with no record in it is now taken again.
    dev, last = _torn_empty_head()
    for boot in range(5):
        power_on(dev)
        store = MiniStore.open(Region(dev, retain=3000))
        assert store.seq == last and [e[0] for e in store._ring] == [0, 1, 2], boot
        dev.mode, dev.after_cut, dev.cut_at = "torn", "lost", dev.ops + 3  # retire, erase, header, the record
        raises(OSError, store.append, {"boot": boot, "fill": "z" * 350})
        store._abandon()
    power_on(dev)
    with MiniStore.open(Region(dev, retain=3000)) as store:  # steady power again
        for i in range(40):
            assert store.append({"i": i, "fill": "w" * 350}) == last + 1 + i
    assert MiniStore.replay(Region(dev))[-1]["i"] == 39


def test_a_cut_while_a_torn_empty_head_is_taken_again_loses_nothing():
    cuts = 0
    for mode in flashsweep.MODES:
        for k in range(5):  # the retire, the erase, the header, the record, after it
            image, last = _torn_empty_head()
            image.mode, image.after_cut, image.cut_at = mode, "lost", image.ops + k
            try:
                with MiniStore.open(Region(image, retain=3000)) as store:
                    store.append({"new": k})
                acked = True
            except OSError:
                store._abandon()
                acked = False
            cuts += image.dead
            after = power_on(image)
            back = MiniStore.replay(Region(after, retain=3000))
            assert back.seq in ((last + 1,) if acked and mode != "drop" else (last, last + 1)), (mode, k, back.seq)
            with MiniStore.open(Region(after, retain=3000)) as store:
                seq = store.append("again")
            assert MiniStore.replay(Region(after))[-1] == "again" and seq == back.seq + 1, (mode, k)
    assert cuts == len(flashsweep.MODES) * 4
