# Core bugs found by the fuzzer (tests/test_fuzz.py), one reproducer each, here so
# that MicroPython runs them too. What `mini verify` says of the same files stays in
# tests/test_fuzz.py (the host tools run on CPython only).
from support import scratch, raises, read_bytes, write_bytes
from ministore import MiniStore, CorruptRecord, MAX_DEPTH, header_line, record_line
from minilog import segment_files
from ministate import StateManager, Mutator, ReplayError
from miniqueue import MiniQueue, QueueCorrupt


class Put(Mutator):
    def __init__(self, key, value):
        self.key = key
        self.value = value

    def apply(self, state):
        state["items"].append([self.key, self.value])


class Add(Mutator):
    def __init__(self, by):
        self.by = by

    def apply(self, state):
        state["total"] += self.by


def nested(levels, inner=1):
    for _ in range(levels):
        inner = [inner]
    return inner


def _unencodable():
    values = ["\ud800"]  # a lone surrogate (CPython: check_value passed it, the encoder did not)
    try:
        values.append(10 ** 5000)
    except OverflowError:
        pass
    return values


def test_state_manager_refuses_an_unencodable_field_and_stays_open():
    # ministate applied the mutator, then the encoder refused the record: the state
    # kept the change and the manager closed itself. Records are now encoded first.
    for value in _unencodable():
        try:
            value.encode()  # MicroPython has no lone surrogates: nothing to test there
        except (UnicodeError, AttributeError):
            pass
        else:
            if isinstance(value, str):
                continue
        sm = StateManager.open(scratch(), initial={"items": []}, mutators=[Put], snapshot_every=None)
        try:
            raises(ValueError, sm.apply, Put("k", value))
            assert sm.state == {"items": []} and not sm.closed
            sm.apply(Put("k", 1))
        finally:
            sm.close()


def test_sealed_line_this_runtime_cannot_parse_is_corruption_not_a_torn_tail():
    # A 6021-digit int, sealed: CPython cannot parse it, and it was never a crash,
    # so open() must not pad over it. MicroPython parses it: there it is a record.
    for middle in (False, True):
        path = scratch() + "/j.jsonl"
        lines = header_line(0) + record_line(1, b'"a"') + record_line(2, b"7" * 6021)
        if middle:
            lines += record_line(3, b'"c"')
        write_bytes(path, lines)
        try:
            records = MiniStore.replay(path)
        except CorruptRecord as exc:
            assert exc.line == 3 and "not JSON" in exc.reason
            raises(CorruptRecord, MiniStore.open, path)
        else:
            assert len(records) == (3 if middle else 2) and records.torn is None
            MiniStore.open(path).close()
        assert read_bytes(path) == lines  # never padded over


def test_sealed_record_nested_too_deep_is_corruption():
    # The reader's fast path let RecursionError out (parse_line already caught it).
    # CPython's parser gives up at this depth; the unix port's does not (a board's
    # small C stack would): either way it is read whole or refused, never padded over.
    for tail in (b"", record_line(2, b'"b"')):
        path = scratch() + "/j.jsonl"
        data = header_line(0) + record_line(1, b"[" * 5000 + b"]" * 5000) + tail
        write_bytes(path, data)
        try:
            records = MiniStore.replay(path)
        except CorruptRecord:
            raises(CorruptRecord, MiniStore.open, path)
        else:
            assert len(records) == (2 if tail else 1) and records.torn is None
        assert read_bytes(path) == data


def test_the_depth_check_behind_a_parse_out_of_heap_counts_only_real_nesting():
    # A board's json parser keeps a stack as deep as the nesting: on the 192 KB build a
    # sealed line 5,000 deep ran out of heap, and every open would have failed. Then the
    # line counts as foreign only if it nests deeper than any writer nests.
    import minidamage
    deepest = record_line(1, b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    assert not minidamage.nests_deeper_than(deepest, MAX_DEPTH + 2)
    assert minidamage.nests_deeper_than(record_line(1, b"[" * 35 + b"]" * 35), MAX_DEPTH + 2)
    text = b'{"a":"[[[[{{{{\\"[[[[","b":[{"c":"]]]]}}}}"}]}'  # brackets inside strings, an escaped quote
    assert not minidamage.nests_deeper_than(text, 3) and minidamage.nests_deeper_than(text, 2)
    assert not minidamage.nests_deeper_than(b'"' + b"[" * 99 + b'"', 0)


def test_queue_events_of_the_wrong_shape_are_refused():
    # Replay trusted an intact event's shape: TypeError escaped inspect() and open().
    for event in ({"ckpt_end": 5}, {"ckpt_end": {"messages": 3, "dropped": 0}}, {"get": [1]}, {"ack": {"a": 1}},
                  {"nack": True}, {"get": 9}, {"ckpt": [1, "m", 0]}, {"ckpt": [1, "m", -1, 0]},
                  {"ckpt": [1, "m", 0, 7]}, {"ckpt": [[1], "m", 0, 0]}, {"frob": 1}, [1]):
        d = scratch()
        with MiniQueue.open(d) as q:
            q.put("m")
            q._log.append(event)  # an intact event no queue writes: the only way to get one on disk
        raises(QueueCorrupt, MiniQueue.inspect, d)
        raises(QueueCorrupt, MiniQueue.open, d)


def test_queue_checkpoint_begun_again_after_a_cut_one_is_not_counted_twice():
    # A checkpoint cut after a chunk, a reopen, a compact() at once and a second cut
    # before the old segments went: replay glued both checkpoints together.
    d = scratch()
    with MiniQueue.open(d) as q:
        for i in range(40):
            q.put(i)
        q._log.roll()
        q._log.append_many([{"ckpt": [mid, mid - 1, 0, 0]} for mid in range(1, 33)])  # the cut checkpoint
    with MiniQueue.open(d) as q:
        assert len(q) == 40 and q.live_bytes() == 70
        q._log.compact = lambda upto_seq: 0  # the second cut: before any old segment is removed
        q.compact()
    q = MiniQueue.inspect(d)
    assert len(q) == 40 and q.live_bytes() == 70
    with MiniQueue.open(d) as q:
        assert [q.get()[1] for _ in range(40)] == list(range(40))


class RenamedField(Mutator):
    """Add, after an application update renamed its field: the journal still says {"Add": {"by": 1}}."""

    def __init__(self, amount):
        self.amount = amount

    def apply(self, state):
        state["total"] += self.amount


def test_journaled_fields_the_mutator_no_longer_takes_raise_replay_error():
    # cls(**fields) used to run outside the ReplayError wrapping: TypeError came out.
    d = scratch()
    with StateManager.open(d, initial={"total": 0}, mutators=[Add]) as sm:
        sm.apply(Add(1))
    renamed = type("Add", (RenamedField,), {})
    raises(ReplayError, StateManager.load, d, {"total": 0}, [renamed])


class StricterAdd(Mutator):
    """Add, after an application update began to refuse what it once took (amounts over 10)."""

    def __init__(self, by):
        if by > 10:
            raise ValueError("amount too large")
        self.by = by

    def apply(self, state):
        state["total"] += self.by


def test_a_mutator_that_now_refuses_its_journaled_fields_raises_replay_error():
    # Only TypeError was wrapped: a validating __init__ came out as a bare ValueError,
    # with no seq and nothing saying it happened during recovery.
    d = scratch()
    with StateManager.open(d, initial={"total": 0}, mutators=[Add]) as sm:
        sm.apply(Add(50))
    stricter = type("Add", (StricterAdd,), {})
    exc = raises(ReplayError, StateManager.load, d, {"total": 0}, [stricter])
    assert "seq 1" in str(exc) and "amount too large" in str(exc)
    raises(ReplayError, StateManager.open, d, {"total": 0}, [stricter])


def test_queue_compacts_every_message_it_accepted():
    # put() checked a message at depth 0; a checkpoint stores it two levels down, so a
    # 31-level message was taken, then every compaction raised out of a durable put.
    d = scratch()
    with MiniQueue.open(d, compact_bytes=300) as q:
        try:
            q.put(nested(MAX_DEPTH - 1))
        except ValueError:
            pass  # refused up front, writing nothing: fine
        for i in range(10):
            q.put(i)
        q.compact()
        assert len(segment_files(d)) == 1


def test_apply_does_not_raise_after_the_mutation_is_durable():
    # An automatic snapshot of a state JSON cannot store raised out of apply() after
    # the mutation was journaled. The state is now encoded before the journal write.
    d = scratch()
    with StateManager.open(d, initial={"items": []}, mutators=[Put], snapshot_every=1) as sm:
        try:
            sm.apply(Put("k", nested(MAX_DEPTH - 2)))
        except ValueError:
            loaded = StateManager.load(d, {"items": []}, [Put])
            assert loaded.seq == 0, "apply() raised, but the mutation is in the journal"
