# The Python API that users of sqlite3, persist-queue and diskcache expect (README):
# path-like paths, readers that close when a loop stops, useful reprs, a named load
# result, and key-value mutators.
import sys

from support import scratch, raises
from ministore import MiniStore
from minisnap import SnapStore
from ministate import StateManager, Set, Delete, Update, KEY_VALUE
from miniqueue import MiniQueue

MICROPYTHON = sys.implementation.name == "micropython"


def test_path_like_objects_work_everywhere_on_cpython():
    if MICROPYTHON:
        return  # no pathlib: str paths, as before
    from pathlib import Path
    d = Path(scratch())
    with MiniStore.open(d / "j.jsonl") as store:
        store.append(1)
    assert MiniStore.replay(d / "j.jsonl") == [1]
    assert [seq for seq, _ in MiniStore.stream(d / "j.jsonl")] == [1]
    with StateManager.open(d / "s", initial={}, mutators=KEY_VALUE) as sm:
        sm.apply(Set("a", 1))
        sm.create_snapshot()
    assert StateManager.load(d / "s", {}, KEY_VALUE).state == {"a": 1}
    assert SnapStore(d / "s").restore() == ({"a": 1}, 1)
    with MiniQueue.open(d / "q") as q:
        q.put("m")
    assert len(MiniQueue.inspect(d / "q")) == 1


def test_a_loop_left_early_closes_the_reader():
    path = scratch() + "/j.jsonl"
    with MiniStore.open(path) as store:
        store.append_many([1, 2, 3])
    reader = MiniStore.stream(path)
    for _ in reader:
        break
    if not MICROPYTHON:
        assert reader._f is None  # closed at the break, not when the collector runs
    else:  # no reference counting there: only `with` or close() close it
        reader.close()
    with MiniStore.stream(path) as reader:
        assert [rec for _, rec in reader] == [1, 2, 3]
    assert reader._f is None


def test_reprs_say_what_an_object_is():
    d = scratch()
    store = MiniStore.open(d + "/j.jsonl", sync=4)
    store.append(1)
    assert repr(store) == "<MiniStore %r seq=1 durable_seq=0 sync=4>" % (d + "/j.jsonl")
    store.close()
    assert repr(store).endswith(" closed>")
    reader = MiniStore.stream(d + "/j.jsonl")
    list(reader)
    assert "seq=1" in repr(reader) and "closed" in repr(reader)
    with StateManager.open(d + "/s", initial={}, mutators=KEY_VALUE) as sm:
        sm.apply(Set("k", "v"))
        assert repr(sm) == "<StateManager %r seq=1 snapshot_seq=0 mutators=['Delete', 'Set', 'Update']>" % (
            d + "/s")
    with MiniQueue.open(d + "/q") as q:
        q.put("a")
        q.put("b")
        q.get()
        assert repr(q) == "<MiniQueue %r ready=1 in_flight=1 dead=0 dropped=0 live_bytes=6>" % (d + "/q")
    assert "ready=1 in_flight=1" in repr(MiniQueue.inspect(d + "/q"))  # as it was when closed
    loaded = StateManager.load(d + "/s", {}, KEY_VALUE)
    assert repr(loaded) == "Loaded(seq=1, snapshot_seq=0, state={'k': 'v'})"


def test_load_names_its_results_and_still_unpacks():
    d = scratch()
    with StateManager.open(d, initial={"n": 0}, mutators=KEY_VALUE) as sm:
        sm.apply(Set("n", 5))
        sm.create_snapshot()
        sm.apply(Set("n", 6))
    loaded = StateManager.load(d, {"n": 0}, KEY_VALUE)
    assert loaded.state == {"n": 6} and loaded.seq == 2 and loaded.snapshot_seq == 1
    state, seq, snapshot_seq = loaded
    assert (state, seq, snapshot_seq) == ({"n": 6}, 2, 1)


def test_read_only_views_of_a_missing_directory_raise_instead_of_reading_empty():
    # A wrong path (a typo, a pull that never ran) once read as the initial state or an
    # empty queue: the reader could not tell it from a device that had stored nothing.
    d = scratch()
    for call in (lambda: StateManager.load(d + "/typo", {"n": 0}, KEY_VALUE),
                 lambda: MiniQueue.inspect(d + "/typo")):
        exc = raises(OSError, call)
        assert exc.args[0] == 2 and (MICROPYTHON or "typo" in str(exc))  # MicroPython's names no path
    # An existing, empty directory is a journal with no records yet, as before.
    assert StateManager.load(d, {"n": 0}, KEY_VALUE).state == {"n": 0}
    assert len(MiniQueue.inspect(d)) == 0


def test_none_or_a_number_for_a_path_is_a_type_error():
    # On CPython MiniQueue.open(None) opened a queue in the current directory: the path
    # joining dropped the None and kept ".lock" and the journal's name.
    for bad in (None, 5):
        raises(TypeError, MiniQueue.open, bad)
        raises(TypeError, MiniQueue.inspect, bad)
        raises(TypeError, StateManager.open, bad, {}, KEY_VALUE)
        raises(TypeError, StateManager.load, bad, {}, KEY_VALUE)
        raises(TypeError, MiniStore.open, bad)
        raises(TypeError, SnapStore, bad)


def test_key_value_mutators_make_a_config_store():
    d = scratch()
    with StateManager.open(d, initial={}, mutators=KEY_VALUE) as config:
        config.apply(Set("wifi", {"ssid": "lab", "channel": 6}))
        config.apply(Update({"interval_s": 30, "unit": "C"}))
        config.apply(Delete("unit"))
        config.apply(Delete("never-set"))  # nothing to delete: no error
        config.apply_many([Set("a", 1), Set("b", [1, 2])])
        live = dict(config.state)
    with StateManager.open(d, initial={}, mutators=KEY_VALUE) as config:
        assert config.state == live == {"wifi": {"ssid": "lab", "channel": 6}, "interval_s": 30, "a": 1,
                                        "b": [1, 2]}


def test_help_has_something_to_say():
    if MICROPYTHON:
        return  # MicroPython drops docstrings when it compiles
    import ministore
    import minilog
    import minisnap
    import ministate
    import miniqueue
    import minishim
    for module in (ministore, minilog, minisnap, ministate, miniqueue, minishim):
        assert module.__doc__ and module.__doc__.strip(), module
    for method in (MiniStore.stream, MiniStore.replay, MiniStore.close, MiniStore.sync, StateManager.sync,
                   StateManager.close, MiniQueue.sync, MiniQueue.close, StateManager.load, MiniQueue.inspect):
        assert method.__doc__, method


def test_queue_conveniences_persist_queue_users_expect():
    d = scratch()
    with MiniQueue.open(d, max_bytes=40) as q:
        assert q.peek() is None and q.qsize() == 0 and not q.full()
        ids = q.put_many(["a" * 8, "b" * 8, "c" * 8])
        assert q.peek() == (ids[0], "a" * 8) and q.qsize() == 3  # peek delivers nothing
        assert q.get() == (ids[0], "a" * 8)
        q.dead_letter(ids[0])  # explicit dead-lettering of a delivered message
        assert q.dead() == [(ids[0], "a" * 8, 1)] and q.qsize() == 2
        q.put("d" * 8)
        assert q.full()  # 4 x 10 bytes of stored JSON: max_bytes reached
        seen = []
        for mid, message in q:  # drains what is ready
            seen.append(message)
            q.ack(mid)
        assert seen == ["b" * 8, "c" * 8, "d" * 8] and q.qsize() == 0 and not q.full()
    with MiniQueue.open(d, max_bytes=40) as q:  # the dead letter and the acks survive
        assert q.dead() == [(ids[0], "a" * 8, 1)] and q.get() is None


def test_queue_waiting_api_persist_queue_and_asyncio_users_expect():
    # The waiting side of issue 17 (tests/core/test_queue_wait.py tests how each behaves).
    d = scratch()
    with MiniQueue.open(d, retry_delay=5) as q:
        mid = q.put("m")
        assert q.get(timeout=0.01) == (mid, "m")
        q.nack(mid)  # the open()'s retry_delay applies
        assert q.delayed() == 1 and q.qsize() == 0 and "delayed=1" in repr(q)
        assert q.get(timeout=0.01) is None
    if not MICROPYTHON:  # MicroPython drops docstrings when it compiles
        import miniwait
        assert miniwait.__doc__
        for method in (MiniQueue.get, MiniQueue.aget, MiniQueue.nack, MiniQueue.delayed):
            assert method.__doc__, method
        assert "RAM" in MiniQueue.nack.__doc__  # whether a delay survives a restart: documented
