# The journal on LittleFS (FORMAT.md 2.3, "block end" pads; MiniStore.refresh): run on
# every file system by tests/mp/runner.py and on CPython, where no file is on LittleFS.
import minishim
from ministore import MiniStore, JournalReader, SYNC_POINT
from miniqueue import MiniQueue
from minilog import segment_files
from support import FS, scratch


def _records(count):
    # 100 to 200 bytes each: a 4 KiB block ends inside a record now and then
    return [{"n": i, "fill": "x" * (60 + (i * 37) % 100)} for i in range(count)]


def _block_ends(block, count):
    """File offsets where LittleFS blocks end (littlefs SPEC.md, CTZ skip-lists: block i > 0
    starts with ctz(i) + 1 pointers of 4 bytes), counted block by block: a check that does
    not use minishim.littlefs_left's closed form."""
    ends = []
    total = 0
    for i in range(count):
        zeros = 0
        while i and not (i >> zeros) & 1:
            zeros += 1
        total += block if i == 0 else block - 4 * (zeros + 1)
        ends.append(total)
    return ends


def test_littlefs_is_told_apart():
    path = scratch() + "/j.jsonl"
    block = minishim.littlefs_block(path)
    if FS.startswith("lfs2"):
        assert block == 4096, block  # both geometries: 4 KiB blocks
    else:
        assert block is None, (FS, block)


def test_block_end_pads_end_exactly_at_littlefs_block_ends():
    path = scratch() + "/j.jsonl"
    block = minishim.littlefs_block(path)
    records = _records(150)
    with MiniStore.open(path) as store:  # sync="always": the pads are for synced writes
        for record in records:
            store.append(record)
    with MiniStore.open(path, sync=8) as store:  # no pads when writes are not each synced
        for record in records[:40]:
            store.append(record)
    offset = 0
    pads = []
    points = 0
    with open(path, "rb") as f:  # a line at a time: the 28 KB file, split, did not fit a board's heap
        for line in f:
            offset += len(line)
            points += line == SYNC_POINT
            if b'"why":"block end"' in line:
                pads.append(offset)
                # the pad's last byte is the last of its LittleFS block: the next write starts a block
                assert offset in _block_ends(block, 64), (offset, len(line))
                assert minishim.littlefs_left(offset - 1, block) == 1, (offset, len(line))
    assert offset == minishim.file_size(path)  # every line ends with a newline
    with JournalReader(path) as reader:  # a record at a time: both lists at once outgrew a 128 KB board's heap
        got = 0
        for _, record in reader:
            assert record == records[got % len(records)], got  # records, then records[:40]
            got += 1
        assert got == len(records) + 40
        assert reader.pads == len(pads) + points
    # sync=8 starts its first write and the one after each sync with a "sync point" pad
    # (FORMAT.md 2.3), but not on LittleFS, which lands a sync whole or not at all
    assert points == (0 if block else 5), points
    if block is None:
        assert pads == [], pads
    else:
        assert pads and max(pads) < minishim.file_size(path) - 40 * 100, pads  # none in the sync=8 part


def test_a_journal_keeps_appending_across_reopens_and_refresh():
    # On LittleFS the file is opened again every few syncs and after a compaction removed
    # segments (refresh): nothing is lost or written twice. Elsewhere refresh does nothing.
    d = scratch()
    q = MiniQueue.open(d, compact_bytes=2000)
    want = []
    for i in range(60):
        q.put({"i": i})
        want.append({"i": i})
        if i % 3 == 0:
            mid, msg = q.get()
            assert msg == want.pop(0)
            q.ack(mid)
        q._log.store.refresh()
    assert len(segment_files(d)) == 1
    q.close()
    with MiniQueue.open(d) as q:
        got = []
        while True:
            item = q.get()
            if item is None:
                break
            got.append(item[1])
            q.ack(item[0])
    assert got == want
