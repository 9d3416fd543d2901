# ministate tests, on CPython (pytest) and MicroPython (tests/mp/runner.py).
from support import scratch, raises, read_bytes, write_bytes, lines, float32_values, is_subnormal32, FLOAT32
import minishim
from ministore import MiniStore, ClosedError, FormatError
from minilog import CompactionGap
from ministate import StateManager, Mutator, UnknownMutator, ReplayError


class Inc(Mutator):
    def __init__(self, by):
        self.by = by

    def apply(self, state):
        state["value"] += self.by


class Put(Mutator):
    def __init__(self, key, value):
        self.key = key
        self.value = value

    def apply(self, state):
        state.setdefault("items", {})[self.key] = self.value


class HalfThenFail(Mutator):
    """Changes the state, then raises: the change must not survive."""

    def __init__(self, by):
        self.by = by

    def apply(self, state):
        state["value"] += self.by
        state["items"] = "clobbered"
        raise RuntimeError("fails halfway")


MUTATORS = [Inc, Put, HalfThenFail]


def manager(d, **kwargs):
    kwargs.setdefault("snapshot_every", None)
    return StateManager.open(d, initial={"value": 0}, mutators=MUTATORS, **kwargs)


def test_apply_and_reopen():
    d = scratch()
    with manager(d) as sm:
        assert sm.apply(Inc(by=10)) == 1
        assert sm.apply_many([Inc(by=1), Put(key="k", value="caf\u00e9")]) == 3
        assert sm.state == {"value": 11, "items": {"k": "caf\u00e9"}}
        assert sm.seq == 3
    with manager(d) as sm:
        assert sm.state == {"value": 11, "items": {"k": "caf\u00e9"}} and sm.seq == 3


def test_mutator_is_journaled_as_name_and_fields():
    d = scratch()
    with manager(d) as sm:
        sm.apply(Inc(by=10))
    assert MiniStore.replay(d + "/journal-00000001.jsonl") == [{"Inc": {"by": 10}}]


def test_initial_state_is_copied_not_shared():
    d = scratch()
    initial = {"value": 0}
    with StateManager.open(d, initial=initial, mutators=[Inc]) as sm:
        sm.apply(Inc(by=5))
    assert initial == {"value": 0}


def test_recovery_from_snapshot_and_tail():
    d = scratch()
    with manager(d) as sm:
        for _ in range(5):
            sm.apply(Inc(by=1))
        assert sm.create_snapshot() == 5
        sm.apply(Inc(by=100))
    with manager(d) as sm:
        assert sm.snapshot_seq == 5 and sm.seq == 6
        assert sm.state["value"] == 105


def test_compaction_drops_journal_covered_by_the_oldest_kept_snapshot():
    d = scratch()
    with manager(d, keep=2) as sm:
        for round_ in range(4):
            sm.apply(Inc(by=1))
            sm.create_snapshot()
        sm.apply(Inc(by=1))
    journals = sorted(n for n in minishim.listdir(d) if n.startswith("journal-"))
    snaps = sorted(n for n in minishim.listdir(d) if n.startswith("snap-"))
    assert len(snaps) == 2
    # snapshots at seq 3 and 4: segments holding seqs <= 3 are gone
    assert journals == ["journal-00000004.jsonl", "journal-00000005.jsonl"]
    with manager(d) as sm:
        assert sm.state["value"] == 5 and sm.seq == 5


def test_corrupt_newest_snapshot_falls_back_and_state_is_right():
    d = scratch()
    with manager(d, keep=2) as sm:
        sm.apply(Inc(by=1))
        sm.create_snapshot()
        sm.apply(Inc(by=2))
        sm.create_snapshot()
        sm.apply(Inc(by=4))
    newest = sorted(n for n in minishim.listdir(d) if n.startswith("snap-"))[-1]
    data = read_bytes(d + "/" + newest)
    write_bytes(d + "/" + newest, data.replace(b'"value":3', b'"value":9'))
    with manager(d) as sm:
        assert sm.fell_back and sm.snapshot_seq == 1
        assert sm.skipped_snapshots[0][0].endswith(newest)
        assert sm.state["value"] == 7 and sm.seq == 3


def test_no_valid_snapshot_for_compacted_journal_is_an_error():
    d = scratch()
    with manager(d, keep=1) as sm:
        sm.apply(Inc(by=1))
        sm.create_snapshot()
        sm.apply(Inc(by=2))
    snap = d + "/" + [n for n in minishim.listdir(d) if n.startswith("snap-")][0]
    data = read_bytes(snap)
    write_bytes(snap, data[:len(data) // 2])  # a snapshot of ours, damaged: torn
    err = raises(CompactionGap, manager, d)
    assert "gone" in str(err)
    write_bytes(snap, b"garbage")  # not ours: refused, never removed or changed
    err = raises(FormatError, manager, d)
    assert "not a minisnap snapshot" in str(err)
    assert read_bytes(snap) == b"garbage"


def test_a_foreign_file_among_older_snapshots_is_refused_at_open():
    # Restore reads the newest valid snapshot; a foreign snap-00000000.json below it was
    # noticed only by the next snapshot's prune, whose FormatError then failed an apply
    # that was durable and applied (and every automatic snapshot after it).
    d = scratch()
    with manager(d, keep=2) as sm:
        for by in (1, 2):
            sm.apply(Inc(by=by))
            sm.create_snapshot()
    names = sorted(n for n in minishim.listdir(d) if n.startswith("snap-"))
    assert len(names) == 2
    older = d + "/" + names[0]
    ours = read_bytes(older)
    for torn in (ours[:len(ours) // 2], ours[:10], b""):  # ours, torn (some shorter than the head): opens
        write_bytes(older, torn)
        with manager(d) as sm:
            assert sm.state["value"] == 3 and not sm.fell_back
    assert b'"value":1' in ours
    write_bytes(older, ours.replace(b'"value":1', b'"value":5'))  # ours, a flipped bit: opens
    with manager(d) as sm:
        assert sm.state["value"] == 3
    foreign = d + "/snap-00000000.json"
    write_bytes(foreign, b'{"not": "ours"}\n')
    err = raises(FormatError, manager, d)
    assert "snap-00000000.json" in str(err) and "not a minisnap snapshot" in str(err), str(err)
    assert read_bytes(foreign) == b'{"not": "ours"}\n'
    minishim.remove(foreign)
    with manager(d) as sm:
        sm.apply(Inc(by=4))
        sm.create_snapshot()
        assert sm.state["value"] == 7


def test_snapshot_beyond_journal_end_is_an_error():
    d = scratch()
    with manager(d) as sm:
        sm.apply(Inc(by=1))
        sm.create_snapshot()
    from minisnap import SnapStore
    SnapStore(d).create({"value": 50}, 50)
    err = raises(CompactionGap, manager, d)
    assert "seq 50" in str(err)


def test_unknown_mutator_is_named():
    d = scratch()
    with manager(d) as sm:
        sm.apply(Put(key="a", value=1))
    err = raises(UnknownMutator, StateManager.open, d, {"value": 0}, [Inc])
    assert "Put" in str(err) and "seq 1" in str(err)


def test_raising_mutator_changes_neither_journal_nor_state():
    d = scratch()
    with manager(d) as sm:
        sm.apply(Put(key="k", value=1))
        before_state = minishim.dumps(sm.state)
        before_journal = read_bytes(d + "/journal-00000001.jsonl")
        raises(RuntimeError, sm.apply, HalfThenFail(by=5))
        raises(RuntimeError, sm.apply_many, [Inc(by=1), HalfThenFail(by=5)])
        assert minishim.dumps(sm.state) == before_state
        assert read_bytes(d + "/journal-00000001.jsonl") == before_journal
        assert sm.seq == 1
        assert sm.apply(Inc(by=1)) == 2
    with manager(d) as sm:
        assert sm.state == {"value": 1, "items": {"k": 1}}


def test_bad_mutator_input_is_refused():
    d = scratch()

    class Stranger(Mutator):
        def apply(self, state):
            pass
    with manager(d) as sm:
        raises(ValueError, sm.apply, Stranger())
        raises(TypeError, sm.apply, {"Inc": {"by": 1}})
        raises(TypeError, sm.apply, Put(key="k", value=b"bytes"))
        assert sm.seq == 0 and sm.state == {"value": 0}
    raises(TypeError, StateManager.open, scratch(), {}, [dict])
    raises(ValueError, StateManager.open, scratch(), {}, [Inc], 0)


def test_automatic_snapshots_by_count_and_by_bytes():
    d = scratch()
    with manager(d, snapshot_every=3) as sm:
        for _ in range(7):
            sm.apply(Inc(by=1))
        assert sm.snapshot_seq == 6
    d = scratch()
    with manager(d, snapshot_bytes=600) as sm:
        for _ in range(20):
            sm.apply(Put(key="k", value="x" * 50))
        assert sm.snapshot_seq > 0
        taken = sm.snapshot_seq
    with manager(d) as sm:
        assert sm.snapshot_seq == taken and sm.seq == 20


class Bury(Mutator):
    """A small record that makes the state nest deeper than a snapshot can store."""

    def __init__(self, levels):
        self.levels = levels

    def apply(self, state):
        value = 1
        for _ in range(self.levels):
            value = [value]
        state["deep"] = value


def test_a_snapshot_that_cannot_store_the_state_refuses_the_mutation_first():
    # The snapshot this apply() triggers is checked before the record is journaled:
    # a ValueError out of apply() means nothing was written and nothing changed.
    for options in ({"snapshot_every": 2}, {"snapshot_bytes": 200}):
        d = scratch()
        with StateManager.open(d, initial={"value": 0}, mutators=[Inc, Bury], **options) as sm:
            sm.apply(Inc(by=1))  # the next commit is due for a snapshot, under both options
            err = raises(ValueError, sm.apply, Bury(levels=40))
            assert "deeper" in str(err), err
            assert sm.seq == 1 and sm.state == {"value": 1} and not sm.closed
            sm.apply(Inc(by=1))
            assert sm.snapshot_seq == 2
        with StateManager.open(d, initial={"value": 0}, mutators=[Inc, Bury], snapshot_every=None) as sm:
            assert sm.state == {"value": 2} and sm.seq == 2
    # Without an automatic snapshot it is journaled; create_snapshot() then refuses,
    # writing nothing, and the journal still recovers the state.
    d = scratch()
    with StateManager.open(d, initial={"value": 0}, mutators=[Inc, Bury], snapshot_every=None) as sm:
        sm.apply(Bury(levels=40))
        raises(ValueError, sm.create_snapshot)
        assert sm.snapshot_seq == 0 and not sm.closed
    with StateManager.open(d, initial={"value": 0}, mutators=[Inc, Bury], snapshot_every=None) as sm:
        assert sm.seq == 1 and "deep" in sm.state


def test_snapshot_matches_its_seq():
    d = scratch()
    with manager(d, snapshot_every=2) as sm:
        sm.apply_many([Inc(by=1), Inc(by=1), Inc(by=1)])
    from minisnap import SnapStore
    state, seq = SnapStore(d).restore()
    assert seq == 3 and state["value"] == 3


class Flaky(Mutator):
    """A mutator whose code changed after it was journaled: it now fails on replay."""
    broken = False

    def __init__(self, by):
        self.by = by

    def apply(self, state):
        if Flaky.broken:
            raise KeyError("nope")
        state["value"] += self.by


def test_mutation_that_fails_on_replay_is_reported():
    d = scratch()
    with StateManager.open(d, initial={"value": 0}, mutators=[Flaky]) as sm:
        sm.apply(Flaky(by=1))
    Flaky.broken = True
    try:
        err = raises(ReplayError, StateManager.open, d, {"value": 0}, [Flaky])
        assert "seq 1" in str(err) and "Flaky" in str(err)
    finally:
        Flaky.broken = False
    StateManager.open(d, {"value": 0}, [Flaky]).close()  # the failed open released the lock


def test_closed_manager_refuses_changes():
    sm = manager(scratch())
    sm.apply(Inc(by=1))
    sm.close()
    sm.close()
    assert sm.seq == 1  # still answers: the seq it was closed at
    raises(ClosedError, sm.apply, Inc(by=1))
    raises(ClosedError, sm.create_snapshot)
    raises(ClosedError, sm.sync)


def test_recovery_replays_a_long_journal_in_constant_memory():
    import gc
    d = scratch()
    with manager(d, sync=200) as sm:
        for i in range(1500):
            sm.apply(Inc(by=1))
    gc.collect()
    with manager(d) as sm:
        assert sm.state["value"] == 1500


def test_second_manager_on_the_same_directory_is_locked_out():
    from ministore import LockedError
    d = scratch()
    sm = manager(d)
    raises(LockedError, manager, d)
    sm.create_snapshot()  # rolling to a new segment keeps the directory locked
    raises(LockedError, manager, d)
    sm.close()
    manager(d).close()


def test_load_is_read_only_recovery():
    d = scratch()
    sm = manager(d)
    sm.apply(Inc(by=2))
    sm.create_snapshot()
    sm.apply(Inc(by=3))
    state, seq, snap_seq = StateManager.load(d, {"value": 0}, MUTATORS)  # writer still open
    assert state["value"] == 5 and seq == 2 and snap_seq == 1
    sm.close()


def test_recovered_state_equals_the_live_state_bit_for_bit():
    # Issue 14: on a single-precision runtime the float text the journal holds may
    # parse 1 ulp away from the float passed in. The manager applies what the journal
    # holds, and settles its state at each snapshot, so recovery (snapshot + journal)
    # rebuilds exactly the live state. Only a float32 subnormal that drifts at every
    # write-parse pass is refused (ValueError, nothing written).
    values = float32_values(24, seed=14) + [0.109633684, 28.512085, -0.0, 1.0]  # fits a 128 KB heap
    for snapshot_every in (None, 11):
        d = scratch()
        refused = 0
        with manager(d, snapshot_every=snapshot_every) as sm:
            for i in range(len(values)):
                try:
                    sm.apply(Put(key="k%d" % i, value=values[i]))
                except ValueError:
                    assert FLOAT32 and is_subnormal32(values[i]), values[i]
                    refused += 1
            sm.apply(Inc(by=0.1))  # arithmetic on floats, replayed identically
            live = minishim.dumps(sm.state)
            live_items = sm.state["items"]
            seq = sm.seq
        assert seq == len(values) + 1 - refused
        with manager(d) as sm:
            assert sm.seq == seq
            assert minishim.dumps(sm.state) == live
            for key in live_items:
                a, b = live_items[key], sm.state["items"][key]
                assert a == b and repr(a) == repr(b), (key, a, b)


def test_a_snapshot_is_written_between_two_segments_and_a_failed_one_leaves_the_manager_working():
    # The snapshot's file is written while no segment is open (SegmentedLog.roll's
    # `between`): on a board it takes the heap block the old segment's file held.
    d = scratch()
    sm = manager(d)
    for _ in range(3):
        sm.apply(Inc(by=1))
    seen = []
    snaps = sm._snaps
    create = snaps.create

    def failing_create(state, seq, pieces=None):
        seen.append(sorted(n for n in minishim.listdir(d) if n.startswith("journal-")))
        seen.append(sm._log.store.closed)
        raise OSError(28, "no space left (test)")
    snaps.create = failing_create
    raises(OSError, sm.create_snapshot)
    assert seen == [["journal-00000001.jsonl"], True]  # the old segment closed, the next one not made yet
    snaps.create = create
    assert sm.apply(Inc(by=10)) == 4  # a new segment, after seq 3
    assert sm.create_snapshot() == 4
    sm.apply(Inc(by=100))
    assert sm.state["value"] == 113
    sm.close()
    with manager(d) as again:
        assert (again.state, again.seq, again.snapshot_seq) == ({"value": 113}, 5, 4)
