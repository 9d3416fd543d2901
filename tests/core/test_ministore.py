# ministore tests. They run under pytest on CPython and under tests/mp/runner.py
# on the MicroPython unix port (posix, LittleFS and FAT), so they use only plain
# asserts and the helpers in support.py.
from support import scratch, raises, read_bytes, write_bytes, append_bytes, size, lines, MICROPYTHON, FLOATS
import minishim
from ministore import (MiniStore, CorruptRecord, FormatError, LockedError, ClosedError,
                       MiniError, header_line, record_line, encode_json, seal)


def journal():
    return scratch() + "/journal.jsonl"


def test_append_returns_seq_and_replays_in_order():
    path = journal()
    with MiniStore.open(path) as store:
        assert store.seq == 0
        assert store.append({"Set": {"value": 42}}) == 1
        assert store.append({"Inc": {"by": 1}}) == 2
        assert store.seq == 2
    assert MiniStore.replay(path) == [{"Set": {"value": 42}}, {"Inc": {"by": 1}}]
    assert list(MiniStore.stream(path)) == [(1, {"Set": {"value": 42}}), (2, {"Inc": {"by": 1}})]


def test_open_creates_missing_directories():
    path = scratch() + "/a/b/c/journal.jsonl"
    with MiniStore.open(path) as store:
        store.append(1)
    assert MiniStore.replay(path) == [1]


def test_values_round_trip_exactly():
    values = [
        {"text": "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c", "quote": "a\"b\\c\nd\te\x01"},
        {"floats": FLOATS},  # [0.1, -2.5e-308, 1e300, 1.0, -0.0, pi, 1 / 3] on doubles
        {"ints": [0, -1, 2 ** 31, -(2 ** 63), 12345678901234567890123]},
        {"nested": {"a": [{"b": [None, True, False]}], "": {}}},
        [], "", 7, None, 2.5,
    ]
    path = journal()
    with MiniStore.open(path) as store:
        for value in values:
            store.append(value)
    back = MiniStore.replay(path)
    assert back == values
    for a, b in zip(back[1]["floats"], values[1]["floats"]):
        assert type(a) is float and repr(a) == repr(b)
    assert type(back[2]["ints"][4]) is int


def test_every_line_is_json_with_header_first():
    path = journal()
    with MiniStore.open(path) as store:
        store.append({"x": "\u00e9"})
        store.append_many([1, 2, 3])
    all_lines = lines(path)
    assert len(all_lines) == 5
    head = minishim.loads(all_lines[0])
    assert head["format"] == "ministore" and head["version"] == 1 and head["base_seq"] == 0
    seqs = [minishim.loads(line)["seq"] for line in all_lines[1:]]
    assert seqs == [1, 2, 3, 4]
    assert minishim.loads(all_lines[2])["batch"] == 3


def test_crc_covers_the_exact_bytes_before_it():
    path = journal()
    with MiniStore.open(path) as store:
        store.append({"k": "v"})
    line = lines(path)[1]
    cut = line.rindex(b',"crc":"')
    crc = minishim.loads(line)["crc"]
    assert crc == "%08x" % (minishim.crc32(line[:cut]) & 0xFFFFFFFF)


def test_reopen_continues_the_sequence():
    path = journal()
    with MiniStore.open(path) as store:
        store.append("a")
    with MiniStore.open(path) as store:
        assert store.seq == 1
        assert store.append("b") == 2
    assert MiniStore.replay(path) == ["a", "b"]


def test_append_many_is_one_batch_and_returns_last_seq():
    path = journal()
    with MiniStore.open(path) as store:
        store.append("first")
        assert store.append_many([{"Inc": {"by": 1}}, {"Inc": {"by": 2}}]) == 3
        assert store.append_many([]) == 3
        assert store.append_many(["single"]) == 4
        # A str, bytes or dict is one record, not a batch: append_many("ab") would append
        # "a" and "b", append_many({"k": 1}) the key "k" alone.
        for one in ("ab", b"ab", bytearray(b"ab"), {"k": 1}):
            assert "a batch is a list" in str(raises(TypeError, store.append_many, one))
        assert store.seq == 4
    assert MiniStore.replay(path) == ["first", {"Inc": {"by": 1}}, {"Inc": {"by": 2}}, "single"]


def test_bad_input_raises_before_anything_is_written():
    path = journal()
    store = MiniStore.open(path)
    store.append("ok")
    before = size(path)
    bad = [b"bytes", bytearray(b"x"), float("nan"), float("inf"), -float("inf"),
           {1: "int key"}, {"t": (1, 2)}, object(), {"s": set()} if not MICROPYTHON else {"s": {1}},
           {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]
    for value in bad:
        err = raises(Exception, store.append, value)
        assert isinstance(err, (TypeError, ValueError)), repr(err)
        err = raises(Exception, store.append_many, ["fine", value])
        assert isinstance(err, (TypeError, ValueError)), repr(err)
    assert size(path) == before
    assert store.seq == 1
    assert store.append("still ok") == 2
    store.close()
    assert MiniStore.replay(path) == ["ok", "still ok"]


def test_int_past_4300_digits_is_refused_on_every_runtime():
    # CPython (3.11+) cannot parse such an int: a journal holding one would not read
    # on the host, so no runtime writes one.
    path = journal()
    with MiniStore.open(path) as store:
        before = size(path)
        for value in (10 ** 4300, -(10 ** 4300), [1, 2 ** 20000], {"k": {"k": 10 ** 5000}}):
            err = raises(ValueError, store.append, value)
            assert "4300" in str(err)
            raises(ValueError, store.append_many, [1, value])
        assert size(path) == before
        assert store.append([10 ** 4300 - 1, -(10 ** 4300 - 1)]) == 1
    assert MiniStore.replay(path) == [[10 ** 4300 - 1, -(10 ** 4300 - 1)]]


def test_sealed_line_that_does_not_parse_is_corruption_even_at_the_end():
    # Its CRC matches, so no crash tore it: another writer or runtime wrote it.
    for tail in (b"", record_line(3, encode_json("c"))):
        path = journal()
        with MiniStore.open(path) as store:
            store.append("a")
        foreign = seal(b'{"seq":2,"rec":[')
        append_bytes(path, foreign + tail)
        before = read_bytes(path)
        err = raises(CorruptRecord, MiniStore.replay, path)
        assert err.line == 3 and "not JSON" in err.reason, err
        raises(CorruptRecord, MiniStore.open, path)
        assert read_bytes(path) == before  # refused, never padded over
    path = journal()
    write_bytes(path, header_line(0) + seal(b'{"other":1'))
    err = raises(CorruptRecord, MiniStore.replay, path)
    assert "neither" in err.reason
    # NaN and Infinity are not JSON: MicroPython refuses them, and so does CPython here.
    for body in (b"NaN", b"-Infinity", b"[1,Infinity]"):
        path = journal()
        write_bytes(path, header_line(0) + record_line(1, body))
        err = raises(CorruptRecord, MiniStore.replay, path)
        assert err.line == 2, err


def test_sync_policy_batches_syncs_and_close_syncs():
    path = journal()
    store = MiniStore.open(path, sync=3)
    store.append(1)
    store.append(2)
    assert store.durable_seq == 0
    store.append(3)
    assert store.durable_seq == 3
    store.append(4)
    store.sync()
    assert store.durable_seq == 4
    store.append(5)
    store.close()
    assert MiniStore.replay(path) == [1, 2, 3, 4, 5]


def test_bad_sync_argument_is_rejected():
    for bad in ("sometimes", 0, -1, True, 1.5, None):
        raises(ValueError, MiniStore.open, journal(), bad)


def test_closed_store_refuses_writes():
    store = MiniStore.open(journal())
    store.close()
    store.close()  # idempotent
    assert store.closed
    raises(ClosedError, store.append, 1)
    raises(ClosedError, store.sync)


def test_second_writer_is_locked_out():
    path = journal()
    store = MiniStore.open(path)
    err = raises(LockedError, MiniStore.open, path)
    assert path in str(err)
    store.close()
    MiniStore.open(path).close()


def test_torn_last_line_is_reported_by_readers_and_cut_by_writer():
    path = journal()
    with MiniStore.open(path) as store:
        store.append("a")
        store.append("b")
    good = size(path)
    append_bytes(path, b'{"seq":3,"rec":"c","cr')
    records = MiniStore.replay(path)
    assert records == ["a", "b"]
    assert records.torn.offset == good and records.torn.line == 4
    assert "incomplete" in records.torn.reason
    reader = MiniStore.stream(path)
    assert list(reader) == [(1, "a"), (2, "b")]
    assert reader.torn is not None
    with MiniStore.open(path) as store:
        assert store.seq == 2
        assert store.append("c") == 3
    records = MiniStore.replay(path)
    assert records == ["a", "b", "c"] and records.torn is None
    for line in lines(path):
        minishim.loads(line)  # the pad keeps every line JSON


def test_bad_crc_on_last_line_is_a_torn_tail():
    path = journal()
    with MiniStore.open(path) as store:
        store.append("a")
    append_bytes(path, record_line(2, encode_json("b")).replace(b'"b"', b'"B"'))
    records = MiniStore.replay(path)
    assert records == ["a"] and records.torn.reason == "crc mismatch"
    with MiniStore.open(path) as store:
        assert store.append("b2") == 2
    assert MiniStore.replay(path) == ["a", "b2"]


def test_complete_record_without_newline_is_not_acknowledged():
    path = journal()
    with MiniStore.open(path) as store:
        store.append("a")
    append_bytes(path, record_line(2, encode_json("b"))[:-1])
    assert MiniStore.replay(path) == ["a"]
    with MiniStore.open(path) as store:
        assert store.seq == 1
        store.append("c")
    assert MiniStore.replay(path) == ["a", "c"]


def test_incomplete_batch_is_dropped_whole():
    path = journal()
    with MiniStore.open(path) as store:
        store.append("a")
    batch = record_line(2, encode_json("b1"), 3) + record_line(3, encode_json("b2"))
    append_bytes(path, batch)
    records = MiniStore.replay(path)
    assert records == ["a"] and "incomplete batch" in records.torn.reason
    with MiniStore.open(path) as store:
        assert store.seq == 1
        assert store.append_many(["x", "y"]) == 3
    assert MiniStore.replay(path) == ["a", "x", "y"]


def test_batch_with_torn_last_line_is_dropped_whole():
    path = journal()
    with MiniStore.open(path) as store:
        store.append("a")
    batch = record_line(2, encode_json("b1"), 2) + record_line(3, encode_json("b2"))
    append_bytes(path, batch[:-7])
    assert MiniStore.replay(path) == ["a"]
    with MiniStore.open(path) as store:
        assert store.seq == 1


def test_corrupt_middle_line_raises_with_location():
    path = journal()
    with MiniStore.open(path) as store:
        for i in range(5):
            store.append({"i": i})
    data = read_bytes(path)
    third = data.index(b'{"seq":3')
    write_bytes(path, data[:third + 20] + b"X" + data[third + 21:])
    for action in (lambda: MiniStore.replay(path), lambda: list(MiniStore.stream(path)),
                   lambda: MiniStore.open(path)):
        err = raises(CorruptRecord, action)
        assert err.line == 4 and err.offset == third and err.path == path
        assert "crc mismatch" in err.reason
        assert "line 4" in str(err) and str(third) in str(err)
        assert isinstance(err, MiniError)
    # open() failed cleanly: the lock was released
    raises(CorruptRecord, MiniStore.open, path)


def test_sequence_gap_is_corruption():
    path = journal()
    with MiniStore.open(path) as store:
        store.append("a")
    append_bytes(path, record_line(3, encode_json("c")))
    err = raises(CorruptRecord, MiniStore.replay, path)
    assert "sequence gap" in err.reason and err.line == 3


def test_unknown_version_and_foreign_files_are_refused():
    path = journal()
    # A newer version's header, sealed as its writer would (a CRC-damaged line is a torn
    # header whatever it names: FORMAT.md 2.1).
    bad_head = seal(b'{"format":"ministore","version":9,"base_seq":0')
    write_bytes(path, bad_head)
    err = raises(FormatError, MiniStore.replay, path)
    assert "version" in str(err)
    raises(FormatError, MiniStore.open, path)
    write_bytes(path, b'{"hello":"world"}\n')
    raises(FormatError, MiniStore.replay, path)
    raises(FormatError, MiniStore.open, path)
    assert read_bytes(path) == b'{"hello":"world"}\n'  # refused, not overwritten


def test_torn_header_and_empty_file_recover():
    for content in (b"", b'{"format":"minis'):
        path = journal()
        write_bytes(path, content)
        assert MiniStore.replay(path) == []
        with MiniStore.open(path) as store:
            assert store.seq == 0
            store.append("a")
        assert MiniStore.replay(path) == ["a"]
        for line in lines(path):
            minishim.loads(line)


def test_header_whose_crc_fails_is_torn_not_trusted():
    # A flipped bit in base_seq keeps the line valid JSON of our format: the CRC
    # alone says it is damaged, and a damaged base_seq must not renumber records.
    path = journal()
    MiniStore.open(path).close()
    data = bytearray(read_bytes(path))
    at = bytes(data).index(b'"base_seq":0') + len(b'"base_seq":')
    data[at] ^= 1  # "0" -> "1"
    write_bytes(path, bytes(data))
    replay = MiniStore.replay(path)
    assert replay == [] and replay.seq is None and replay.torn is not None
    with MiniStore.open(path) as store:
        assert store.seq == 0
        assert store.append("a") == 1
    assert MiniStore.replay(path) == ["a"]
    # with a record after it, the damaged header is corruption, reported at line 1
    path = journal()
    with MiniStore.open(path) as store:
        store.append("a")
    data = bytearray(read_bytes(path))
    data[at] ^= 1
    write_bytes(path, bytes(data))
    err = raises(CorruptRecord, MiniStore.replay, path)
    assert err.line == 1, err


def test_crash_during_recovery_still_recovers():
    path = journal()
    with MiniStore.open(path) as store:
        store.append("a")
    good = size(path)
    garbage = b'{"seq":2,"rec":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"'
    append_bytes(path, garbage)
    with MiniStore.open(path) as store:  # writes the pad
        pass
    padded = read_bytes(path)
    # Simulate a power cut during that pad write: only half of it landed.
    pad = padded[good:]
    half = garbage + b""
    half = padded[:good] + pad[:len(pad) // 2] + garbage[len(pad) // 2:]
    write_bytes(path, half)
    assert MiniStore.replay(path) == ["a"]
    with MiniStore.open(path) as store:
        assert store.seq == 1
        store.append("b")
    assert MiniStore.replay(path) == ["a", "b"]


def test_stream_from_seq_and_replay_callback():
    path = journal()
    with MiniStore.open(path) as store:
        store.append_many(["a", "b", "c"])
        store.append("d")
    assert list(MiniStore.stream(path, from_seq=3)) == [(3, "c"), (4, "d")]
    assert MiniStore.replay(path, from_seq=2) == ["b", "c", "d"]
    seen = []
    with MiniStore.open(path, replay=lambda seq, rec: seen.append((seq, rec))) as store:
        assert store.seq == 4
    assert seen == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]


def test_base_seq_starts_numbering_later():
    path = journal()
    with MiniStore.open(path, base_seq=100) as store:
        assert store.append("x") == 101
    reader = MiniStore.stream(path)
    assert list(reader) == [(101, "x")] and reader.base_seq == 100


def test_failed_replay_callback_releases_the_lock():
    path = journal()
    with MiniStore.open(path) as store:
        store.append("a")

    def explode(seq, rec):
        raise RuntimeError("boom")
    raises(RuntimeError, MiniStore.open, path, replay=explode)
    MiniStore.open(path).close()


def test_missing_journal_for_reading_is_oserror():
    err = raises(OSError, MiniStore.replay, scratch() + "/nope.jsonl")
    assert err.args[0] == minishim.ENOENT


def test_reader_memory_is_constant_on_a_long_journal():
    import gc
    path = journal()
    with MiniStore.open(path, sync=500) as store:
        for i in range(2000):
            store.append({"i": i, "pad": "x" * 40})
    count = 0
    gc.collect()
    start = gc.mem_alloc() if MICROPYTHON else 0
    peak = 0
    for seq, record in MiniStore.stream(path):
        count += 1
        if MICROPYTHON and count % 250 == 0:
            gc.collect()
            peak = max(peak, gc.mem_alloc() - start)
    assert count == 2000
    assert peak < 8 * 1024, peak  # a 2000-record list alone would be > 100 KB


def test_pad_with_lost_range_skips_repaired_seqs():
    from ministore import pad_line
    path = journal()
    with MiniStore.open(path) as store:
        store.append("a")
    append_bytes(path, pad_line(60, "repaired", (2, 3)) + record_line(4, encode_json("d")))
    reader = MiniStore.stream(path)
    assert list(reader) == [(1, "a"), (4, "d")]
    assert reader.lost == [(2, 3)] and reader.torn is None
    with MiniStore.open(path) as store:
        assert store.seq == 4 and store.append("e") == 5
    append_bytes(path, pad_line(60, "repaired", (9, 9)))  # must start at the next seq
    err = raises(CorruptRecord, MiniStore.replay, path)
    assert "lost range" in err.reason


def test_crash_while_padding_an_incomplete_batch_still_recovers():
    # A crash at any point of the recovery of a torn batch must leave a journal
    # that opens: simulate each prefix of each write the recovery makes.
    path = journal()
    with MiniStore.open(path) as store:
        store.append("a")
    good = size(path)
    torn = (record_line(2, encode_json("b1" * 20), 4) + record_line(3, encode_json("b2" * 20)) +
            record_line(4, encode_json("b3" * 20)))[:-5]
    append_bytes(path, torn)
    before = read_bytes(path)
    with MiniStore.open(path) as store:
        assert store.seq == 1
    after = read_bytes(path)
    # The recovery's writes, replayed one at a time with every possible cut point:
    # each intermediate image must read as ["a"] with a torn tail, and must open.
    lines_at = [good, good + len(record_line(2, encode_json("b1" * 20), 4)),
                good + len(record_line(2, encode_json("b1" * 20), 4)) + len(record_line(3, encode_json("b2" * 20)))]
    images = []
    current = bytearray(before)
    for offset in reversed(lines_at):  # the damaging writes, then the pad
        current[offset:offset + 1] = b"X"
        images.append(bytes(current))
    pad = after[good:]
    for cut in range(0, len(pad) + 1, 7):
        image = bytearray(images[-1])
        image[good:good + cut] = pad[:cut]
        images.append(bytes(image))
    checked = 0
    for image in images:
        write_bytes(path, image)
        assert MiniStore.replay(path) == ["a"]
        with MiniStore.open(path) as store:
            assert store.seq == 1
        checked += 1
    assert checked > 10


def test_a_periodic_reopen_that_fails_keeps_the_sync_and_the_next_write_opens_the_file():
    # On LittleFS the journal's file is reopened every few syncs. On a fragmented board
    # heap the open can fail (MemoryError): the sync before it is done, so the append
    # stands, and the next write opens the file again. (Before: a later sync called
    # flush() on no file, and an AttributeError hid the error.)
    path = scratch() + "/log.jsonl"
    store = MiniStore.open(path)
    journal_file = store._file
    journal_file.reopen_every = 2  # as on LittleFS (_REOPEN_EVERY), on every filesystem here
    failures = []

    def reopen_fails():
        f, journal_file._f = journal_file._f, None
        if f is not None:
            f.close()
        failures.append(1)
        raise MemoryError("no block for the file (test)")
    if MICROPYTHON:
        journal_file.reopen = reopen_fails
    for i in range(6):
        assert store.append({"n": i}) == i + 1
    store.sync()
    store.close()
    assert failures == ([1, 1, 1] if MICROPYTHON else [])  # CPython syncs through its fd, and never reopens
    assert [r for _, r in MiniStore.stream(path)] == [{"n": i} for i in range(6)]
