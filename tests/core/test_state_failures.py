# An error in the middle of a StateManager call (a MemoryError on a board's small heap,
# Ctrl-C, a full disk during an automatic snapshot), and a caller that keeps using what
# it passed to apply(). Whatever happens, the live state is the one a reopen recovers,
# and no acknowledged apply is lost or applied twice.
from support import scratch, raises, fails_once
import minishim
import minilog
from ministore import ClosedError
from ministate import StateManager, Mutator, Set


class Inc(Mutator):
    def __init__(self, by):
        self.by = by

    def apply(self, state):
        state["value"] = state.get("value", 0) + self.by


class Fails(Mutator):
    def __init__(self, why):
        self.why = why

    def apply(self, state):
        state["clobbered"] = True
        raise ValueError(self.why)


MUTATORS = [Inc, Set, Fails]


def _open(d, **options):
    options.setdefault("snapshot_every", None)
    return StateManager.open(d, initial={}, mutators=MUTATORS, **options)


def _recovered(d):
    with _open(d) as again:
        return dict(again.state)


def test_the_caller_changing_what_it_applied_does_not_change_the_live_state():
    # Set("r", items) kept the caller's list in the state: appending to it afterwards
    # changed the live state with nothing journaled, and a snapshot then made it durable.
    d = scratch()
    sm = _open(d)
    items = [1]
    sm.apply(Set("r", items))
    items.append(2)
    assert sm.state["r"] == [1]
    sm.create_snapshot()
    sm.close()
    assert _recovered(d)["r"] == [1]


def test_an_interrupted_rebuild_closes_the_manager():
    # A mutator raised, so the state is rebuilt from disk; Ctrl-C in that rebuild left a
    # half-rebuilt state open, which the next snapshot wrote over acknowledged applies.
    d = scratch()
    sm = _open(d)
    for i in range(5):
        sm.apply(Set("k%d" % i, i))
    fails_once(sm, "_load_snapshot", KeyboardInterrupt())
    raises(KeyboardInterrupt, sm.apply, Fails("halfway"))
    raises(ClosedError, lambda: sm.state)
    raises(ClosedError, sm.create_snapshot)
    sm.close()
    assert _recovered(d) == dict(("k%d" % i, i) for i in range(5))


def test_ctrl_c_between_a_raising_mutator_and_its_rebuild_closes_the_manager():
    # Ctrl-C just as the handler of a raising mutator called _rebuild (before its own
    # handler ran) left the half-applied state open: "clobbered" in sm.state, and the
    # next snapshot would make it durable with no journal record behind it.
    d = scratch()
    sm = _open(d)
    sm.apply(Inc(1))
    fails_once(sm, "_rebuild", KeyboardInterrupt())
    raises(KeyboardInterrupt, sm.apply, Fails("halfway"))
    err = raises(ClosedError, sm.create_snapshot)  # it would have made the half-applied state durable
    assert "interrupted" in str(err), str(err)
    raises(ClosedError, lambda: sm.state)  # closed by that refusal
    sm.close()
    assert _recovered(d) == {"value": 1}
    sm = _open(d)
    fails_once(sm, "_rebuild", KeyboardInterrupt())
    raises(KeyboardInterrupt, sm.apply, Fails("halfway"))
    err = raises(ClosedError, sm.apply, Inc(1))  # it would have built on the half-applied state
    assert "interrupted" in str(err), str(err)
    sm.close()
    assert _recovered(d) == {"value": 1}
    # A mutator that raises with no interruption: rebuilt, and the manager stays open.
    with _open(d) as sm:
        raises(ValueError, sm.apply, Fails("alone"))
        assert sm.state == {"value": 1}
        sm.apply(Inc(1))
    assert _recovered(d) == {"value": 2}


def test_state_read_while_an_apply_is_under_way_is_not_refused():
    # `state` read while an apply is under way (by another thread without the lock, or
    # here by the mutator itself) is not refused: only an interrupted apply is.
    seen = []

    class Peeks(Mutator):
        def __init__(self, n):
            self.n = n

        def apply(self, state):
            seen.append(dict(manager.state))
            state["value"] = state.get("value", 0) + self.n
    d = scratch()
    manager = StateManager.open(d, initial={}, mutators=MUTATORS + [Peeks], snapshot_every=None)
    manager.apply(Peeks(10))
    manager.apply(Peeks(-10))
    assert seen == [{}, {"value": 10}] and manager.state == {"value": 0}
    manager.close()


def test_a_failure_as_a_segment_is_listed_leaves_no_segment_out_of_a_rebuild():
    # roll() opened the new segment, then ran out of heap listing it: the store wrote
    # there, and a rebuild (after a mutator raised) replayed the listed segments only.
    d = scratch()
    sm = _open(d)
    sm.apply(Set("a", 1))
    fails_once(minilog, "Segment", MemoryError("test: no heap to list the segment"))
    raises(MemoryError, sm.create_snapshot)
    acked = ["a"]
    try:
        sm.apply(Set("b", 2))
        acked.append("b")
    except ClosedError:
        pass
    try:
        sm.apply(Fails("after the roll"))
    except (ValueError, ClosedError):
        pass
    try:
        live = dict(sm.state)
    except ClosedError:
        live = None
    sm.close()
    recovered = _recovered(d)
    assert all(key in recovered for key in acked), (acked, recovered)
    assert live is None or live == recovered, (live, recovered)


def test_a_compaction_interrupted_between_a_removal_and_its_record_goes_on_later():
    d = scratch()
    sm = _open(d, keep=1)
    sm.apply(Inc(1))
    sm.create_snapshot()
    sm.apply(Inc(1))
    real_remove = minishim.remove

    def interrupted(path):  # the segment's file is removed, and Ctrl-C lands before it is unlisted
        real_remove(path)
        if "journal-" in path:
            minishim.remove = real_remove
            raise KeyboardInterrupt
    minishim.remove = interrupted
    try:
        raises(KeyboardInterrupt, sm.create_snapshot)
    finally:
        minishim.remove = real_remove
    sm.apply(Inc(1))
    assert sm.create_snapshot() == 3  # before: FileNotFoundError, at this and every later compaction
    sm.close()
    assert _recovered(d) == {"value": 3}


def test_an_automatic_snapshot_that_fails_closes_the_manager_so_no_retry_applies_twice():
    # The apply is durable and applied when its snapshot runs. The error still reaches
    # the caller (an I/O error is never swallowed), but the manager stayed open, and a
    # retry of the apply applied the mutation a second time.
    d = scratch()
    sm = _open(d, snapshot_every=3)
    sm.apply(Inc(1))
    sm.apply(Inc(1))
    fails_once(sm._snaps, "create", OSError(28, "test: no space left for the snapshot"))
    raises(OSError, sm.apply, Inc(100))
    retry = raises(ClosedError, sm.apply, Inc(100))  # the retry
    assert "no space left for the snapshot" in str(retry), str(retry)  # it says why, not only "closed"
    raises(ClosedError, lambda: sm.state)
    sm.close()
    with _open(d) as again:
        assert again.state == {"value": 102} and again.seq == 3  # applied once: the reopen shows it
