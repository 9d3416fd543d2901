# miniflash tests: the journal on a raw flash region (FORMAT.md 6), on the
# flash-faithful NOR block device of tests/mp/blockdev.py. They run under pytest on
# CPython and under tests/mp/runner.py on the MicroPython unix port; they touch no
# filesystem, so the power-cut sweep runs once per runtime (posix on MicroPython).
import os

try:
    import blockdev
except ImportError:  # CPython: pytest puts tests/core on the path, not tests/mp
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mp"))
    import blockdev

import support
from support import raises
import flashsweep
import minishim
import miniflash
from miniflash import Region, RegionFull, FlashStore
from ministore import MiniStore, CorruptRecord, FormatError, LockedError, ClosedError, seal

SECTOR = 4096


def flash(sectors=8, prog=256):
    device = flashsweep.WatchedFlash(SECTOR, sectors)
    device.prog = prog
    return device


def rec(i, size=100):
    return {"i": i, "fill": "x" * size}


def test_round_trip_and_a_raw_dump_is_jsonl():
    dev = flash()
    with MiniStore.open(dev) as store:
        assert store.seq == 0
        assert store.append({"Set": {"value": 42}}) == 1
        assert store.append_many([1, 2, 3]) == 4
        assert store.durable_seq == 4
    assert MiniStore.replay(dev) == [{"Set": {"value": 42}}, 1, 2, 3]
    assert list(MiniStore.stream(dev, from_seq=3)) == [(3, 2), (4, 3)]
    lines = bytes(dev.data[:SECTOR]).rstrip(b"\xff").split(b"\n")
    head = minishim.loads(lines[0])
    assert head["format"] == "miniflash" and head["version"] == 1 and head["base_seq"] == 0
    assert head["erases"] == 1 and head["number"] == 1 and head["sector_size"] == SECTOR
    assert lines[1].startswith(b'{"seq":1,"rec":{"Set":{"value":42}},"crc":"')
    assert lines[2].startswith(b'{"seq":2,"batch":3,"rec":1,')
    assert dev.violations == 0


class _FullList(list):
    def append(self, item):
        raise MemoryError("test: no heap to keep the record")


def test_an_append_that_runs_out_of_heap_counts_no_seq_it_did_not_keep():
    # A board's heap may run out as the record is kept for the sync: the seq must not
    # move, or the next record would be programmed after a gap (the region would not open).
    dev = flash()
    store = MiniStore.open(dev, sync=4)
    store.append("a")
    kept = store._pending
    store._pending = _FullList(kept)
    raises(MemoryError, store.append, "b")
    store._pending = kept
    assert store.seq == 1
    assert store.append("c") == 2
    store.close()
    assert list(MiniStore.stream(dev)) == [(1, "a"), (2, "c")]


def test_reopen_continues_the_seqs_and_replays():
    dev = flash()
    with MiniStore.open(dev) as store:
        for i in range(50):
            store.append(rec(i))
    got = []
    with MiniStore.open(dev, replay=lambda seq, r: got.append(seq)) as store:
        assert store.seq == 50 and got == list(range(1, 51))
        assert store.append("more") == 51
    back = MiniStore.replay(dev)
    assert back.seq == 51 and back[-1] == "more" and back.torn is None


def test_appends_program_erased_space_and_erase_once_per_sector():
    for geometry in ("esp32", "rp2040"):
        prog = blockdev.GEOMETRY[geometry][1]
        dev = flash(16, prog)
        store = MiniStore.open(Region(dev, prog=prog))
        store.append(rec(0, 83))
        line = len(bytes(dev.data[:SECTOR]).rstrip(b"\xff").split(b"\n")[1]) + 1
        assert line == 134
        for i in range(1, 400):
            store.append(rec(i, 83))
        store.close()
        used = (400 * 136) // (SECTOR - miniflash.HEADER_MAX) + 1
        assert dev.erases <= used + 1, (geometry, dev.erases)
        assert dev.erases / 400.0 <= 0.05
        assert dev.violations == 0  # whole aligned units, 0xFF over what is written
        count = 0
        with MiniStore.stream(dev) as reader:  # a record at a time: 400 at once outgrow a 128 KB board's heap
            for _ in reader:
                count += 1
        assert count == 400 and reader.seq == 400


def test_retain_reuses_the_oldest_sectors_and_spreads_the_wear():
    dev = flash(8)
    region = Region(dev, retain=10000)
    with MiniStore.open(region) as store:
        for i in range(3000):
            store.append(rec(i))
        top, mean, ratio = store.wear()
    assert dev.erases > 8 * 5
    assert max(dev.block_erases) - min(dev.block_erases) <= 1
    assert ratio <= 1.2
    count = 0
    with MiniStore.stream(region) as reader:  # a record at a time, as on a 128 KB board
        for _, last in reader:
            count += 1
    assert reader.seq == 3000 and last == rec(2999)
    assert count * 134 >= 10000
    assert dev.violations == 0


def test_region_full_until_released_and_nothing_written_by_a_refused_append():
    dev = flash(3)
    store = MiniStore.open(dev)
    seq = 0
    try:
        while True:
            store.append(rec(seq))
            seq += 1
    except RegionFull:
        pass
    ops = dev.ops
    assert store.seq == seq and store.durable_seq == seq
    raises(RegionFull, store.append, rec(seq))
    assert dev.ops == ops and store.seq == seq
    store.release(10)  # the oldest sector holds more than 10 records: still full
    raises(RegionFull, store.append, rec(seq))
    store.release(seq)
    assert store.append(rec(seq)) == seq + 1
    store.close()
    back = MiniStore.replay(dev)
    assert back[-1] == rec(seq) and back.seq == seq + 1
    # A reopen forgets release(): it is the owner's to say again.
    store = MiniStore.open(dev)
    while True:
        try:
            store.append(rec(0))
        except RegionFull:
            break
    store.close()


def test_a_record_larger_than_a_sector_is_refused_before_writing():
    dev = flash(4)
    with MiniStore.open(dev) as store:
        raises(ValueError, store.append, "y" * SECTOR)
        raises(ValueError, store.append_many, ["y" * 2000, "z" * 2000])
        assert store.seq == 0 and dev.ops == 0
        raises(TypeError, store.append, b"bytes")
        assert store.append("fits") == 1


def test_written_end_is_where_the_erased_tail_begins():
    dev = flash(4)
    region = Region(dev)
    assert region.written_end(1) == 0
    for at in (0, 1, 255, 256, 257, 1000, SECTOR - 1):  # the edges of its 256-byte reads
        dev.data[SECTOR + at] = 0x00
        assert region.written_end(1) == at + 1
        assert region.written_end(1, 0, bytearray(100)) == at + 1  # another buffer's edges
        assert region.written_end(1, at + 1) == at + 1  # nothing written after start: start
        assert region.written_end(1, at) == at + 1
        assert region.written_end(0) == 0 and region.written_end(2) == 0
        dev.data[SECTOR + at] = 0xFF


def test_a_region_with_foreign_data_is_refused_unless_reformat():
    for at in (SECTOR, SECTOR * 2 + 100, SECTOR * 4 - 1):  # one byte, first to last of sectors 1..3
        dev = flash(4)
        dev.data[at] = 0x12
        raises(FormatError, MiniStore.open, dev)
        assert not minishim._held and dev.ops == 0, at
    dev = flash(4)
    dev.data[SECTOR * 2 + 100] = 0x12
    with MiniStore.open(Region(dev, reformat=True)) as store:
        store.append("mine")
    with MiniStore.open(dev) as store:  # a journal now: no flag needed
        assert store.seq == 1


def test_foreign_data_in_sector_0_alone_is_refused_and_a_torn_first_header_is_not():
    # Sector 0 may hold a first header a cut tore, so any written bytes there were taken
    # as one: a config blob, or a LittleFS block, in a region's first sector alone was
    # erased and written over (a review).
    for blob in (b"wifi=home;pass=secret\n", b"\xf0\x0f" * 300, b"{" + b"x" * 300):
        dev = flash(4)
        dev.data[:len(blob)] = blob
        raises(FormatError, MiniStore.open, dev)
        assert bytes(dev.data[:len(blob)]) == blob and dev.ops == 0 and not minishim._held
    line = seal(b'{"format":"miniflash","version":1,"sector_size":4096,"sectors":4,"number":1,"erases":1,"base_seq":0')
    for cut in (1, 10, 40, len(line) - 1):
        dev = flash(4)
        torn = bytearray(line[:cut])
        torn[-1] |= 0x55  # its last byte partly programmed: some bits still 1
        dev.data[:cut] = torn
        with MiniStore.open(dev) as store:  # our own torn header: taken, and written anew
            assert store.append("first") == 1
        assert MiniStore.replay(dev) == ["first"]


def test_other_versions_and_geometries_are_refused():
    dev = flash(4)
    with MiniStore.open(dev) as store:
        store.append(1)
    raises(FormatError, MiniStore.open, Region(dev, sectors=3))
    dev2 = flash(4)
    dev2.data[:200] = b"\xff" * 200
    line = seal(b'{"format":"miniflash","version":2,"sector_size":4096,"sectors":4,"number":1,"erases":1,"base_seq":0')
    dev2.data[:len(line)] = line
    raises(FormatError, MiniStore.open, dev2)
    raises(FormatError, MiniStore.replay, dev2)
    raises(TypeError, MiniStore.open, 42)  # neither a path nor a block device


def test_a_region_opened_at_another_start_is_refused_and_left_alone():
    # Sector number n is always at index (n - 1) % sectors: a region given a start some
    # whole sectors off (a changed partition table) read the sectors it still overlaps
    # as a journal whose oldest records were compacted, and wrote after them.
    dev = flash(10)
    with MiniStore.open(Region(dev, start=0, sectors=8)) as store:
        for i in range(80):  # about 2.7 sectors
            store.append(rec(i))
    before = dev.ops, dev.erases, dev.programmed  # every program and erase is counted (no 12 KB copy on a board)
    for start in (1, 2):
        err = raises(FormatError, MiniStore.open, Region(dev, start=start, sectors=8))
        assert "another start (%d sectors earlier" % start in str(err), str(err)
        raises(FormatError, MiniStore.replay, Region(dev, start=start, sectors=8))
    assert (dev.ops, dev.erases, dev.programmed) == before
    assert len(MiniStore.replay(Region(dev, start=0, sectors=8))) == 80


def test_one_writer_at_a_time():
    dev = flash(4)
    store = MiniStore.open(dev)
    raises(LockedError, MiniStore.open, dev)
    store.close()
    raises(ClosedError, store.append, 1)
    MiniStore.open(dev).close()


def test_a_sub_range_leaves_the_rest_of_the_device_alone():
    dev = flash(8)
    dev.data[0:4] = b"fs!!"  # someone else's data before the region
    region = Region(dev, start=2, sectors=4, retain=0)
    with MiniStore.open(region) as store:
        for i in range(400):
            store.append(rec(i))
    assert dev.block_erases[:2] == [0, 0] and dev.block_erases[6:] == [0, 0]
    assert bytes(dev.data[0:4]) == b"fs!!"
    after = Region(dev, start=6, sectors=2)  # read 256 bytes at a time: an 8 KB copy ran out of the 128 KB board's heap
    assert after.written_end(0) == 0 and after.written_end(1) == 0  # both sectors still erased
    assert MiniStore.replay(region)[-1] == rec(399)


def test_base_seq_and_sync_n():
    dev = flash(4)
    store = MiniStore.open(dev, sync=3, base_seq=100)
    assert store.append(1) == 101 and store.append(2) == 102
    assert store.durable_seq == 100 and dev.ops == 0
    assert store.append(3) == 103 and store.durable_seq == 103
    store.append(4)
    store.close()
    assert MiniStore.replay(dev) == [1, 2, 3, 4]
    assert MiniStore.replay(dev).seq == 104


def test_a_torn_head_is_reported_then_closed_by_the_next_open():
    dev = flash(4)
    with MiniStore.open(dev) as store:
        for i in range(5):
            store.append(rec(i))
    end = len(bytes(dev.data[:SECTOR]).rstrip(b"\xff"))
    dev.data[end:end + 40] = b'{"seq":6,"rec":{"i":5,"fill":"xxxxxxxxxx'  # a program cut short
    back = MiniStore.replay(dev)
    assert len(back) == 5 and back.torn is not None and back.torn.offset == end and back.torn.length == 40
    with MiniStore.open(dev) as store:
        assert store.seq == 5
        assert store.append("next") == 6  # goes to a new sector: the torn bytes stay as they are
    back = MiniStore.replay(dev)
    assert back[-1] == "next" and back.seq == 6 and back.torn is None
    assert dev.data[SECTOR:SECTOR + 1] == b"{"


def test_damage_with_records_after_it_is_corruption():
    dev = flash(4)
    with MiniStore.open(dev) as store:
        for i in range(80):  # about 2.7 sectors
            store.append(rec(i))
    # Each flip is undone by flipping it again (a copy of the 16 KB flash outgrew a 128 KB board's heap).
    dev.data[300] ^= 0x01  # a record in the middle of sector 0
    err = raises(CorruptRecord, MiniStore.replay, dev)
    assert "intact lines follow" in err.reason
    dev.data[300] ^= 0x01
    last = len(bytes(dev.data[:SECTOR]).rstrip(b"\xff")) - 5  # the last record of sector 0: the next sector tells
    dev.data[last] ^= 0x01
    err = raises(CorruptRecord, MiniStore.replay, dev)
    assert "sequence gap" in err.reason
    dev.data[last] ^= 0x01
    assert len(MiniStore.replay(dev)) == 80  # whole again
    dev.data[SECTOR + 3] ^= 0x01  # sector 1's header: the ring has a hole
    raises(CorruptRecord, MiniStore.replay, dev)


def _fill_into_a_page(dev):
    """Append records of about 60 bytes until the head's last page holds three or more
    lines; return (records, the written bytes read back)."""
    n = 0
    with MiniStore.open(dev) as store:
        while True:
            n = store.append(rec(n, 10))
            data = bytes(dev.data[:1536])  # not the sector: a 128 KB board's heap may hold no 4 KB block
            used = len(data.rstrip(b"\xff"))
            assert used < len(data)
            if n >= 8 and used % 256 > 200:
                return n, data[:used]


def test_damage_then_intact_lines_in_the_last_written_page_is_a_cut_page_program():
    # NOR flash programs a page's bits in parallel: a cut can leave a line damaged and the
    # lines after it in the same page intact. That is a torn tail (FORMAT.md 6.2), which
    # the next open closes; the same damage with an intact line in a later page is not.
    dev = flash(4)
    n, data = _fill_into_a_page(dev)
    page = (len(data) - 1) // 256 * 256
    starts = []
    at = data.find(b"\n")
    while 0 <= at < len(data) - 1:
        starts.append(at + 1)
        at = data.find(b"\n", at + 1)
    cut = [at for at in starts if at >= page][0]  # the first line that starts in the last page
    dev.data[cut + 5] ^= 0x01
    back = MiniStore.replay(dev)
    lost = data[cut:].count(b"\n")  # the damaged line and the intact ones after it
    assert lost >= 2 and len(back) == n - lost and back.torn is not None and back.torn.offset == cut
    with MiniStore.open(dev) as store:
        assert store.seq == n - lost
        store.append("next")  # a new sector: nothing is written after damage
    back = MiniStore.replay(dev)
    assert back[-1] == "next" and back.torn is None and dev.data[SECTOR:SECTOR + 1] == b"{"
    dev = flash(4)
    _fill_into_a_page(dev)
    before = [at for at in starts if at < page][-1]  # a line that ends before the last page starts
    dev.data[before - 5] ^= 0x01
    err = raises(CorruptRecord, MiniStore.replay, dev)
    assert "intact lines follow" in err.reason


def test_a_reader_beside_the_writer_sees_a_prefix_never_corruption():
    # A reader takes no lock and reads a sector a window at a time (so that it needs no
    # 4 KB block), so the writer can program records between two of its reads. Wherever
    # that happens, the reader gives a run of the journal's records from the first, as a
    # reader of a growing file does; damage before intact lines is still corruption.
    for at in range(1, 40):
        dev = flash(4)
        store = MiniStore.open(dev)
        for i in range(6):
            store.append(rec(i))
        reads = [0]
        plain = dev.readblocks

        def meddling(block, buf, offset=0):
            reads[0] += 1
            if reads[0] == at:  # between two reads of the reader: three records, two of them one program
                store.append_many([rec(100), rec(101)])
                store.append(rec(102))
            plain(block, buf, offset)
        dev.readblocks = meddling
        seqs = [seq for seq, _ in MiniStore.stream(dev)]
        assert len(seqs) >= 6 and seqs == list(range(1, len(seqs) + 1)), (at, seqs)
        store.close()
        if reads[0] < at:
            break  # the read was over before its at-th read: every point has been tried
        assert [seq for seq, _ in MiniStore.stream(dev)] == list(range(1, 10))
    assert at > 15, at  # headers, lines and the sector's erased end: the reader's reads
    dev = flash(4)
    with MiniStore.open(dev) as store:
        for i in range(9):
            store.append(rec(i))
    dev.data[400] ^= 0x01  # the head sector's third record, with six intact after it
    err = raises(CorruptRecord, MiniStore.replay, dev)
    assert "intact lines follow" in err.reason


def test_powercut_sweep_every_program_and_erase_in_six_modes():
    if support.FS not in ("host", "posix"):
        return  # no filesystem involved: once per runtime is enough
    long = os.getenv("MINI_TORTURE") == "long"
    configs = [
        flashsweep.Config("rp2040", "always", ("retain", 3000), long=long),
        flashsweep.Config("esp32", "always", ("release", 5), sectors=6, long=long),
        flashsweep.Config("rp2040", 4, ("retain", 3000), long=long),
    ]
    if long:
        configs.append(flashsweep.Config("esp32", 3, ("release", 8), sectors=8, long=True))
    fractions = (0.05, 0.25, 0.5, 0.75, 0.95) if long else (0.5, 0.1, 0.9)
    failures = []
    for config in configs:
        checks, failed, acked, ops = flashsweep.sweep(config, fractions, failures.append)
        print("miniflash sweep %s: %d ops, %d checks, %d acked records seen, %d failed" % (
            config.label(), ops, checks, acked, failed))
        assert checks > ops * 4
    assert not failures, "\n".join(failures[:20])
