# "sync point" and "sync always" pads (FORMAT.md 2.3, 2.4): a writer with sync=N says
# where its unsynced stretches begin, so that a power cut that landed a later unsynced
# append without an earlier one (ext4 data=writeback, XFS) reads as a torn tail, while
# damage before a sync point, or after a "sync always" pad, stays corruption.
# tests/test_crash_states.py checks the same through every crash state (CPython).
import minishim
from support import scratch, raises, read_bytes, write_bytes
from ministore import MiniStore, JournalReader, CorruptRecord, SYNC_POINT, SYNC_ALWAYS, PAD, header_line, record_line, \
    encode_json, pad_line, parse_line


def _offsets(path):
    """(offset, line) of each line of the file."""
    out = []
    at = 0
    for line in read_bytes(path).split(b"\n")[:-1]:
        out.append((at, line + b"\n"))
        at += len(line) + 1
    return out


def _zero_line(path, index):
    """Zeros over line `index` (0 = the header) but its newline: a hole a power cut left,
    read as a damaged line of its own (without the newline it would take in the next line)."""
    data = bytearray(read_bytes(path))
    at, line = _offsets(path)[index]
    data[at:at + len(line) - 1] = bytes(len(line) - 1)
    write_bytes(path, bytes(data))


def _journal(sync, count):
    path = scratch() + "/j.jsonl"
    with MiniStore.open(path, sync=sync) as store:
        for i in range(1, count + 1):
            store.append(i)
    return path


def test_the_pads_are_pads_of_the_shortest_form():
    assert SYNC_POINT == pad_line(57, "sync point") and SYNC_ALWAYS == pad_line(58, "sync always")
    assert parse_line(SYNC_POINT)[0] == PAD and parse_line(SYNC_ALWAYS)[0] == PAD


def test_a_sync_n_writer_starts_each_unsynced_stretch_with_a_sync_point():
    for sync in (2, 3):  # 2: the smallest N with a stretch of two appends (1 is "always")
        path = _journal(sync, 7)
        want = [header_line(0)]
        if not minishim.littlefs_block(path):  # LittleFS lands a sync whole or not at all: no pads
            want.append(SYNC_POINT)  # written and synced at open
        for i in range(1, 8):
            if i > 1 and (i - 1) % sync == 0 and not minishim.littlefs_block(path):
                want.append(SYNC_POINT)  # the first write after a sync
            want.append(record_line(i, encode_json(i)))
        assert [line for _, line in _offsets(path)] == want, sync
        assert MiniStore.replay(path) == list(range(1, 8))


def test_a_hole_after_the_last_sync_point_is_a_torn_tail():
    path = _journal(3, 8)
    if minishim.littlefs_block(path):
        _zero_line(path, 5)  # record 5: no sync points, so the strict rule
        raises(CorruptRecord, MiniStore.open, path, 3)
        return
    # header, point, 1, 2, 3, point, 4, 5, 6, point, 7, 8: record 7 lost, 8 landed
    _zero_line(path, 10)
    replay = MiniStore.replay(path)
    assert replay == [1, 2, 3, 4, 5, 6] and replay.torn is not None
    assert replay.torn.offset == _offsets(path)[10][0]
    assert replay.torn.length == len(read_bytes(path)) - replay.torn.offset
    with MiniStore.open(path, sync=3) as store:
        assert store.seq == 6
        store.append("seven")
    assert MiniStore.replay(path) == [1, 2, 3, 4, 5, 6, "seven"]
    assert MiniStore.replay(path).torn is None


def test_damage_before_a_sync_point_is_corruption():
    path = _journal(3, 8)
    _zero_line(path, 7)  # record 5: the sync point after record 6 says it was durable
    err = raises(CorruptRecord, MiniStore.open, path, 3)
    assert "intact lines follow" in str(err)
    raises(CorruptRecord, MiniStore.replay, path)


def test_a_hole_in_the_unsynced_stretch_before_any_record_is_a_torn_tail():
    path = _journal(3, 7)
    if minishim.littlefs_block(path):
        return
    _zero_line(path, 9)  # the sync point after record 6: record 7 landed without it
    assert MiniStore.replay(path) == [1, 2, 3, 4, 5, 6]


def test_a_sync_always_writer_ends_the_unsynced_stretch():
    path = _journal(3, 4)
    with MiniStore.open(path) as store:  # sync="always" from here on
        store.append(5)
        store.append(6)
        store.append(7)
    lines = [line for _, line in _offsets(path)]
    if minishim.littlefs_block(path):
        assert SYNC_ALWAYS not in lines and SYNC_POINT not in lines
    else:
        assert lines.index(SYNC_ALWAYS) == lines.index(record_line(5, encode_json(5))) - 1
        _zero_line(path, lines.index(record_line(6, encode_json(6))))
        raises(CorruptRecord, MiniStore.open, path)  # each of those writes was synced: not a torn tail
    for sync in ("always", 1):  # a journal never unsynced: no pad (sync=1 syncs each append before the next)
        with MiniStore.open(scratch() + "/k.jsonl", sync=sync) as store:
            store.append(1)
            store.append(2)
        assert [line for _, line in _offsets(store.path)] == [header_line(0), record_line(1, encode_json(1)),
                                                               record_line(2, encode_json(2))]


class _Reports:
    def __init__(self):
        self.seen = []

    def report(self, kind, line, offset, length, reason, lost):
        self.seen.append((kind, line, offset))


def test_the_host_tools_reader_reports_the_same_hole_as_a_torn_tail():
    path = _journal(3, 8)
    if minishim.littlefs_block(path):
        return
    _zero_line(path, 10)
    reports = _Reports()
    reader = JournalReader(path, reporter=reports)
    with reader:
        got = [record for _, record in reader]
    assert got == [1, 2, 3, 4, 5, 6]
    assert reports.seen == [("torn", 11, _offsets(path)[10][0])]
    assert reader.torn is not None and reader.unsynced
    _zero_line(path, 3)
    reports = _Reports()
    with JournalReader(path, reporter=reports) as reader:
        got = [record for _, record in reader]
    assert reports.seen[0][0] == "corrupt" and got[0] == 1  # damage before a sync point


def test_a_sync_n_writer_syncs_under_its_lock_so_no_write_lands_during_a_sync():
    # Under sync="always" CPython syncs outside the writers' lock (the group commit), so
    # other threads write meanwhile. A sync=N writer holds it: a write during a sync would
    # get no sync point after it, and the unsynced stretch would run on across syncs, with
    # durable records in it that damage would then take for a torn tail. (MicroPython
    # always syncs under the lock.)
    path = scratch() + "/j.jsonl"
    store = MiniStore.open(path, sync=2)
    if minishim.MICROPYTHON or minishim.littlefs_block(path):
        store.close()
        return
    journal = store._file
    real_sync = journal.sync
    held = []

    def sync():
        held.append(store._lock.locked())
        real_sync()
    journal.sync = sync
    for i in range(7):
        store.append(i)
    store.close()
    assert len(held) == 4 and all(held), held  # after 2, 4, 6, and at close
    assert read_bytes(path).count(SYNC_POINT) == 4  # at open, then after each of the first three
