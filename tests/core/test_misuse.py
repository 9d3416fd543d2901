# Ordinary misuse never loses data or leaves a directory that does not open
# (README "Misuse"): mutator fields, a failed rebuild, a dropped writer, errors
# that say what to do.
import sys

from support import MICROPYTHON, scratch, raises
from ministore import MiniStore, LockedError, ClosedError, encode_json
from ministate import StateManager, Mutator
from miniqueue import MiniQueue

MICROPYTHON = sys.implementation.name == "micropython"


class Cached(Mutator):
    def __init__(self, by):
        self.by = by
        self._cache = None  # private: never journaled

    def apply(self, state):
        self._cache = state["n"]
        state["n"] += self.by


class Renamed(Mutator):
    def __init__(self, amount):
        self.by = amount  # replay would call Renamed(by=...), which __init__ does not take

    def apply(self, state):
        state["n"] += self.by


class Doubled(Mutator):
    def __init__(self, by):
        self.by = by * 2  # replay would double it again

    def apply(self, state):
        state["n"] += self.by


def test_private_attributes_are_not_journaled_and_the_state_reopens():
    d = scratch()
    with StateManager.open(d, initial={"n": 0}, mutators=[Cached]) as sm:
        sm.apply(Cached(2))
        sm.apply_many([Cached(3), Cached(4)])
    for _, record in MiniStore.stream(d + "/journal-00000001.jsonl"):
        assert record == {"Cached": {"by": record["Cached"]["by"]}}
    with StateManager.open(d, initial={"n": 0}, mutators=[Cached]) as sm:
        assert sm.state == {"n": 9}


def test_a_mutator_that_would_not_rebuild_is_refused_before_anything_is_written():
    d = scratch()
    with StateManager.open(d, initial={"n": 0}, mutators=[Renamed, Doubled]) as sm:
        err = raises(ValueError, sm.apply, Renamed(5))
        assert "Renamed" in str(err) and "cannot be journaled" in str(err)
        err = raises(ValueError, sm.apply_many, [Doubled(1), Doubled(2)])
        assert "would rebuild it as" in str(err)
        assert sm.seq == 0 and sm.state == {"n": 0}
    with StateManager.open(d, initial={"n": 0}, mutators=[Renamed, Doubled]) as sm:
        assert sm.seq == 0 and sm.state == {"n": 0}


class Flaky(Mutator):
    fail_on = [None]  # the value of state["n"] at which apply raises

    def __init__(self, by):
        self.by = by

    def apply(self, state):
        if state["n"] == Flaky.fail_on[0]:
            raise RuntimeError("flaky at %d" % state["n"])
        state["n"] += self.by


def test_a_failed_rebuild_closes_the_manager_and_hides_the_state():
    d = scratch()
    Flaky.fail_on[0] = None
    sm = StateManager.open(d, initial={"n": 100}, mutators=[Flaky])
    sm.apply(Flaky(5))      # n: 105
    sm.apply(Flaky(3))      # n: 108
    # Now apply raises at n == 108, and the rebuild's replay raises at n == 105 too:
    # the state in memory may differ from the disk, so the manager must not go on.
    Flaky.fail_on[0] = 108

    def fail_twice(state):
        Flaky.fail_on[0] = 105  # the rebuild, replaying seq 2, meets 105
        raise RuntimeError("first failure")

    class Trigger(Flaky):
        def apply(self, state):
            fail_twice(state)

    sm._registry["Trigger"] = Trigger
    err = raises(ClosedError, sm.apply, Trigger(1))
    assert "rebuilding the state from disk failed" in str(err) and "reopen" in str(err)
    assert sm.closed
    raises(ClosedError, lambda: sm.state)
    raises(ClosedError, sm.apply, Flaky(1))
    Flaky.fail_on[0] = None
    with StateManager.open(d, initial={"n": 100}, mutators=[Flaky]) as again:
        assert again.state == {"n": 108} and again.seq == 2


def test_a_mutator_that_raises_changes_nothing_and_the_manager_goes_on():
    d = scratch()
    Flaky.fail_on[0] = 3
    with StateManager.open(d, initial={"n": 0}, mutators=[Flaky]) as sm:
        sm.apply(Flaky(3))
        raises(RuntimeError, sm.apply, Flaky(1))
        assert sm.state == {"n": 3} and not sm.closed
    Flaky.fail_on[0] = None


def test_locked_error_carries_no_chained_exceptions():
    d = scratch()
    with MiniStore.open(d + "/j.jsonl"):
        err = raises(LockedError, MiniStore.open, d + "/j.jsonl")
        if not MICROPYTHON:
            assert err.__context__ is None and err.__cause__ is None
    with MiniQueue.open(d + "/q"):
        err = raises(LockedError, MiniQueue.open, d + "/q")
        if not MICROPYTHON:
            assert err.__context__ is None


def test_a_writer_dropped_without_close_releases_its_lock_on_cpython():
    if MICROPYTHON:
        return  # no finalizers: README says to close (or use `with`)
    import gc
    d = scratch()
    q = MiniQueue.open(d + "/q", sync=100)
    q.put("kept")
    del q
    gc.collect()
    with MiniQueue.open(d + "/q") as q:  # no LockedError
        assert q.get()[1] == "kept"  # the put reached the file (unsynced writes are still writes)
    store = MiniStore.open(d + "/j.jsonl")
    store.append(1)
    sm = StateManager.open(d + "/s", initial={"n": 0}, mutators=[Cached])
    del store, sm
    gc.collect()
    with MiniStore.open(d + "/j.jsonl") as store:
        assert store.seq == 1
    StateManager.open(d + "/s", initial={"n": 0}, mutators=[Cached]).close()


def test_an_int_too_long_for_cpython_says_what_is_refused_and_why():
    try:
        big = 10 ** 4300
    except OverflowError:
        return  # a port without big ints
    encode_json(big - 1)  # 4300 digits: stored
    err = raises(ValueError, encode_json, [big])
    assert "more than 4300 digits are refused" in str(err) and "set_int_max_str_digits" not in str(err)


class _Tally(dict):
    """A dict subclass, as collections.Counter or defaultdict (MicroPython has neither, and
    no __missing__): a snapshot would give it back as a plain dict."""


class Hit(Mutator):
    def __init__(self, page):
        self.page = page

    def apply(self, state):
        hits = state.setdefault("hits", _Tally())
        hits[self.page] = hits.get(self.page, 0) + 1


def test_a_dict_subclass_is_refused_as_json_and_never_turns_into_a_dict_at_recovery():
    # From a review: a Counter in the state was snapshotted as a plain dict, so the
    # replay after it raised KeyError: four accepted applies, and the directory no
    # longer opened. Such a value is refused as JSON: the apply whose snapshot could not
    # store the state is refused (not journaled, the state rebuilt from disk), loudly.
    raises(TypeError, encode_json, _Tally(a=1))
    raises(TypeError, encode_json, {"k": [_Tally()]})
    d = scratch()
    sm = StateManager.open(d, initial={}, mutators=[Hit], snapshot_every=3)
    sm.apply(Hit("a"))
    sm.apply(Hit("b"))
    why = raises(TypeError, sm.apply, Hit("a"))  # its automatic snapshot cannot store the state
    assert "_Tally" in str(why) and sm.seq == 2 and sorted(sm.state["hits"].items()) == [("a", 1), ("b", 1)]
    sm.close()
    with StateManager.open(d, initial={}, mutators=[Hit], snapshot_every=None) as again:
        assert sorted(again.state["hits"].items()) == [("a", 1), ("b", 1)] and again.seq == 2


def test_a_path_spelled_in_another_case_is_the_same_writer_on_micropython():
    # FAT ignores case: "/fat/state" and "/fat/STATE" are one directory, and a second
    # writer through the other spelling overwrote acknowledged records (a review).
    if not MICROPYTHON:
        return  # CPython locks the file itself (flock), however it is spelled
    d = scratch()
    sm = StateManager.open(d + "/state", initial={}, mutators=[Hit])
    raises(LockedError, StateManager.open, d + "/STATE", {}, [Hit])
    sm.close()
