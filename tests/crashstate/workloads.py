# One workload per brick for the crash-state explorer (explore.py).
#
# A workload is a list of steps, each one call of the brick's API. After step j the
# explorer notes the view a restart must find if steps 1..j landed, from the
# workload's own model of the brick (contract.py), not from the brick's RAM, and which
# steps are acknowledged: those the API promises durable when they return (all of
# them under sync="always"; under sync=N, those the documented policy has synced,
# contract.Durable), never the brick's own count, which must only not be below it. A
# crash state passes if the brick opens on it and shows the view of some step j with
# acked <= j <= attempted: no acknowledged step lost, nothing that was never written.
#
# Each workload is small on purpose (a trace of a few dozen to a few hundred kernel
# operations): the states grow with the square of the trace.
import os

import minishim
from ministore import MiniStore, header_line, record_line, encode_json
from minisnap import SnapStore, NotFound
from minilog import SegmentedLog

from crashstate.contract import Durable, floor_step, check_claim, check_view


class Workload:
    brick = ""
    config = ""
    # Whether the weak model may land a later unsynced append to a file without an
    # earlier one: it may, for every workload. Under sync="always" nothing is appended
    # past an unsynced write, so it changes nothing (ministore-two-threads checks it for
    # two threads' appends). Under sync=N it leaves a hole with
    # intact records after it, which a writer's "sync point" pads (FORMAT.md 2.3) let the
    # reader take for a torn tail; before them the reader refused it as corruption, and
    # these workloads were checked with in-order appends (tests/test_crash_states.py).
    reorder_appends = True

    def setup(self, root):
        """Files that exist, durably, before the recorded steps (default: none)."""

    def initial_view(self):
        return None

    def steps(self):
        raise NotImplementedError

    # The records (or events) after each step, as the workload's model counts them, and
    # what the API promises durable of them (contract.Durable); None: every step is
    # acknowledged when it returns.
    seq_after = None
    durable = None

    def acked(self, obj, j):
        """After step j: the last step whose effects the API promises durable."""
        if self.durable is None:
            return j
        check_claim(self.name, j, self.claimed(obj), self.durable.durable)
        return floor_step(self.seq_after, self.durable.durable)

    def claimed(self, obj):
        """The brick's own count of what is durable (its durable_seq), or None (closed)."""
        return None

    def open(self, root):
        raise NotImplementedError

    def recovered_view(self, obj, root):
        raise NotImplementedError

    def cont(self, obj, view):
        """One more step on the recovered brick; return the view it must have after a reopen."""
        raise NotImplementedError

    def close(self, obj):
        obj.close()

    def allowed(self, view, views, acked, attempted):
        return view in views[acked:attempted + 1]

    @property
    def name(self):
        return "%s/%s" % (self.brick, self.config)


# ---------------------------------------------------------------- ministore

class StoreWorkload(Workload):
    brick = "ministore"

    def __init__(self, sync="always"):
        self.sync = sync
        self.config = "appends+batches sync=%s" % sync
        self.records = []
        self.seq_after = [0]
        self.durable = Durable(sync)
        self.store = None

    def path(self, root):
        return root + "/a/b/journal.jsonl"  # two new directories: their entries must be durable too

    def initial_view(self):
        return ()

    def open(self, root):
        self.root = root
        store = MiniStore.open(self.path(root), sync=self.sync)
        self.durable.sync()  # open() syncs what it found (FORMAT.md 2.5)
        return store

    def opened(self, obj):
        return self.open(self.root)

    def batch(self, values, one=False):
        """A step that appends `values` as one batch, or its one value with append()."""
        def step(store):
            if one:
                store.append(values[0])
            else:
                store.append_many(values)
            self.records.extend(values)
            self.durable.append(len(values))
            return store
        return step

    def one(self, value):
        return self.batch([value], one=True)

    def steps(self):
        opened, one, batch = self.opened, self.one, self.batch

        def reopen(store):
            store.close()
            return self.open(self.root)

        def sync(store):
            store.sync()
            self.durable.sync()
            return store

        def close(store):
            store.close()
            self.durable.sync()
            return store
        return [opened, one("r1"), one({"k": [1, 2]}), batch(["b1", "b2", "b3" * 30]), one("r2" * 40),
                sync, reopen, batch([3, 4]), one(None), close]

    def live_view(self, store):
        self.seq_after.append(len(self.records))
        return tuple(self.records)

    def claimed(self, store):
        return None if store.closed else store.durable_seq

    def recovered_view(self, store, root):
        return tuple(MiniStore.replay(self.path(root)))

    def cont(self, store, view):
        store.append("after")
        return view + ("after",)


class TornStoreWorkload(StoreWorkload):
    """A journal that a crash left with a torn tail: the recorded steps are its recovery."""

    def __init__(self, tail):
        StoreWorkload.__init__(self)
        self.tail = tail
        self.config = "recovery of a %s" % tail

    def setup(self, root):
        path = self.path(root)
        os.makedirs(os.path.dirname(path))
        data = header_line(0) + record_line(1, encode_json("a"))
        if self.tail == "torn batch":   # the last of three lines cut: two intact lines to damage first
            data += (record_line(2, encode_json("b1" * 20), 3) + record_line(3, encode_json("b2" * 20)) +
                     record_line(4, encode_json("b3" * 20)))[:-5]
        elif self.tail == "torn line":
            data += record_line(2, encode_json("c" * 50))[:30]
        elif self.tail == "torn header":
            data = header_line(0)[:20]
        with open(path, "wb") as f:
            f.write(data)
        self.records = [] if self.tail == "torn header" else ["a"]
        self.seq_after = [len(self.records)]
        self.durable = Durable(self.sync, len(self.records))

    def initial_view(self):
        return tuple(self.records)

    def steps(self):
        return StoreWorkload.steps(self)[:3] + StoreWorkload.steps(self)[-1:]


class KilledStoreWorkload(StoreWorkload):
    """A sync=N writer killed with unsynced appends in the page cache, then a second
    writer opens the journal (the power cut can come while it does) and appends.

    The second writer's first sync point must follow a sync of the dead writer's bytes:
    were the pad to land without them, the hole before it would read as damage before a
    sync point, corruption (FORMAT.md 2.3), and the journal would not open."""

    def __init__(self):
        StoreWorkload.__init__(self, sync=3)
        self.config = "sync=3 writer killed, then reopened"

    def steps(self):
        opened, one = self.opened, self.one

        def killed_then_opened(store):
            store._abandon()  # the file closed, not synced: what a SIGKILL leaves in the page cache
            return self.open(self.root)
        return [opened, one("r1"), one("r2"), one("r3"), one("r4"), killed_then_opened, one("r5"),
                killed_then_opened, one("r6"), one("r7")]


class TwoThreadsStoreWorkload(StoreWorkload):
    """sync="always": a second thread appends a batch after the first thread's append has
    put its line, before that thread syncs (forced: the first one's sync waits for the second's
    append to return). Each unsynced stretch must still be one write: a file system that
    lands a later write without an earlier one would otherwise leave a hole before an
    intact line, which open() refuses as corruption (FORMAT.md 2.3)."""

    def __init__(self):
        StoreWorkload.__init__(self)
        self.config = "appends of two threads, sync=always"

    def two(self, first, second):
        def step(store):
            import threading
            own = store._sync_if_due

            def second_meanwhile(seq):
                del store._sync_if_due  # the second thread's append syncs as usual
                other = threading.Thread(target=store.append_many, args=(second,))
                other.start()
                other.join()
                own(seq)
            store._sync_if_due = second_meanwhile
            store.append(first)
            self.records.extend([first] + second)
            self.durable.append(1 + len(second))
            return store
        return step

    def steps(self):
        return [self.opened, self.one("r1"), self.two("a1", ["b1" * 40, "b2"]), self.two("a2" * 40, ["b3", "b4"]),
                self.one("r2"), self.close_step]

    def close_step(self, store):
        store.close()
        self.durable.sync()
        return store

    def allowed(self, view, views, acked, attempted):
        # Inside a step of two appends a crash may keep the first one alone: neither was
        # acknowledged. Each view is a prefix of the last one.
        return len(views[acked]) <= len(view) <= len(views[attempted]) and view == views[attempted][:len(view)]


class LongRecordsWorkload(TwoThreadsStoreWorkload):
    """sync="always" with records longer than ministore._PIECE (1 KiB), which a writer
    builds as pieces (record_pieces) so that a board need not copy them: on CPython each
    sync's stretch must still be one write(), or a file system that lands a later write
    without an earlier one leaves a hole before an intact line (FORMAT.md 2.3)."""

    def __init__(self):
        TwoThreadsStoreWorkload.__init__(self)
        self.config = "records over 1 KiB, one thread and two, sync=always"

    def steps(self):
        return [self.opened, self.one("r1"), self.one("x" * 1100), self.batch(["y" * 1100, "z"]),
                self.two("a" * 1100, ["b"]), self.two("c", ["d" * 1100, "e"]), self.close_step]


# ---------------------------------------------------------------- minishim and minisnap

class FilesWorkload(Workload):
    """The shim's durable file primitives, called directly: each must be durable on return."""

    brick = "minishim"
    config = "makedirs, write_new_file, rename_durably, remove_durably"
    A, C = b"first file\n" * 3, b"second\n"

    def initial_view(self):
        return (False, None, None, None)

    def open(self, root):
        self.root = root
        return None

    def steps(self):
        d = lambda name: self.root + "/d1/d2/" + name  # noqa: E731 (a path helper)
        return [lambda _: minishim.makedirs(self.root + "/d1/d2"),
                lambda _: minishim.write_new_file(d("a"), self.A),
                lambda _: minishim.rename_durably(d("a"), d("b")),
                lambda _: minishim.write_new_file(d("c"), self.C),
                lambda _: minishim.remove_durably(d("b"))]

    def model(self):
        """(directory, a, b, c) after each step, as the primitives' documentation says."""
        A, C = self.A, self.C
        return [(True, None, None, None), (True, A, None, None), (True, None, A, None), (True, None, A, C),
                (True, None, None, C)]

    def live_view(self, obj):
        self.done = getattr(self, "done", 0) + 1
        view = self.model()[self.done - 1]
        check_view(self, self.done, self.recovered_view(obj, self.root), view)
        return view

    def recovered_view(self, obj, root):
        def read(name):
            try:
                with open(root + "/d1/d2/" + name, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                return None
        return (os.path.isdir(root + "/d1/d2"), read("a"), read("b"), read("c"))

    def cont(self, obj, view):
        return view

    def close(self, obj):
        pass

    def allowed(self, view, views, acked, attempted):
        if view in views[acked:attempted + 1]:
            return True
        # A write_new_file in progress may leave its file with any part of its data.
        growing = {2: 1, 4: 3}.get(attempted)
        if growing is None or attempted <= acked:
            return False
        masked = lambda v: v[:growing] + ("?",) + v[growing + 1:]  # noqa: E731
        return masked(view) in (masked(views[attempted - 1]), masked(views[attempted]))


class SnapWorkload(Workload):
    brick = "minisnap"

    def __init__(self, keep=1):
        self.keep = keep
        self.config = "SnapStore.create x4 keep=%d" % keep

    def open(self, root):
        self.root = root
        return SnapStore(root + "/snaps", keep=self.keep)

    def steps(self):
        def create(seq):
            def step(snaps):
                snaps.create({"n": seq, "text": "s" * (seq * 30)}, seq)
                return snaps
            return step
        return [lambda _: self.open(self.root), create(1), create(2), create(3), create(5)]

    def live_view(self, snaps):
        # The model: the newest snapshot created (the first step only opens the store).
        self.done = getattr(self, "done", 0) + 1
        seq = [None, 1, 2, 3, 5][self.done - 1]
        view = None if seq is None else ({"n": seq, "text": "s" * (seq * 30)}, seq)
        check_view(self, self.done, self.recovered_view(snaps, self.root), view)
        return view

    def recovered_view(self, snaps, root):
        try:
            return SnapStore(root + "/snaps").restore()
        except NotFound:
            return None

    def cont(self, snaps, view):
        snaps.create({"after": True}, 9)
        return ({"after": True}, 9)

    def close(self, snaps):
        pass


class SegmentsWorkload(Workload):
    """A journal in segments: roll() promises the old segment is synced before the new one starts."""

    brick = "minisnap"
    config = "SegmentedLog appends and roll() sync=3"

    def __init__(self):
        self.records = []
        self.seq_after = [0]
        self.durable = Durable(3)
        self.found = []

    def initial_view(self):
        return ()

    def open(self, root):
        self.root = root
        self.found = []
        return SegmentedLog.open(root + "/seg", apply=lambda seq, record: self.found.append(record), sync=3)

    def steps(self):
        def append(value):
            def step(log):
                log.append(value)
                self.records.append(value)
                self.durable.append(1)
                return log
            return step

        def roll(log):
            log.roll()
            self.durable.sync()  # the old segment is synced before the new one starts
            return log

        def sync(log):
            log.sync()
            self.durable.sync()
            return log

        def close(log):
            log.close()
            self.durable.sync()
            return log
        return [lambda _: self.open(self.root), append(1), append(2), roll, append(3), sync, append(4), append(5),
                roll, append(6), close]

    def live_view(self, log):
        self.seq_after.append(len(self.records))
        return tuple(self.records)

    def claimed(self, log):
        return None if log.store.closed else log.store.durable_seq

    def recovered_view(self, log, root):
        return tuple(self.found)

    def cont(self, log, view):
        log.append("after")
        return view + ("after",)


def all_workloads():
    """(name, factory) of every workload the CI run explores."""
    from crashstate.workloads_state_queue import StateWorkload, QueueWorkload, QueueCompactionWorkload
    return [
        ("ministore-always", lambda: StoreWorkload()),
        ("ministore-sync3", lambda: StoreWorkload(sync=3)),
        ("ministore-sync3-killed", lambda: KilledStoreWorkload()),
        ("ministore-two-threads", lambda: TwoThreadsStoreWorkload()),
        ("ministore-long-records", lambda: LongRecordsWorkload()),
        ("ministore-torn-batch", lambda: TornStoreWorkload("torn batch")),
        ("ministore-torn-line", lambda: TornStoreWorkload("torn line")),
        ("ministore-torn-header", lambda: TornStoreWorkload("torn header")),
        ("minishim-files", lambda: FilesWorkload()),
        ("minisnap-keep1", lambda: SnapWorkload(keep=1)),
        ("minisnap-segments-sync3", lambda: SegmentsWorkload()),
        ("ministate-always-keep1", lambda: StateWorkload()),
        ("ministate-sync3-keep2", lambda: StateWorkload(sync=3, keep=2, every=4)),
        ("miniqueue-always", lambda: QueueWorkload()),
        ("miniqueue-strict", lambda: QueueWorkload(durability="all")),
        ("miniqueue-sync3-drop", lambda: QueueWorkload(sync=3, on_full="drop_oldest")),
        ("miniqueue-compactions", lambda: QueueCompactionWorkload()),
        ("miniqueue-compactions-strict", lambda: QueueCompactionWorkload(durability="all")),
    ]
