# The combined workload of tests/mp/soak.py (MicroPython unix port): one app, one
# filesystem, three bricks side by side, as boards/sensor_logger.py uses them:
#   APP/state         a StateManager (a counter and a dict of items; automatic and
#                     explicit snapshots, with pruning and journal compaction);
#   APP/outbox        a MiniQueue (put, put_many, get, ack, nack, dead letters,
#                     purge, QueueFull or drop_oldest, automatic and explicit
#                     compaction);
#   APP/wal/log.jsonl a plain ministore journal (append, append_many), which the
#                     app ships past SHIP_BYTES (close, remove, start a new file).
# Each brick has a sync policy of its own, and any of them can be closed and opened
# again in the middle of the run.
#
# App.step() draws one operation from MicroPython's `random` (the caller seeds it)
# and runs it against the bricks and against a reference model of each brick. The
# models predict every record (state mutations, queue events, journal records) and
# so every seq, every message id and what every call returns; the bricks are checked
# against them after every call. "Attempted" records are those a call was asked to
# write; "acknowledged" ones are those a call that returned with the power on made
# durable (its store's durable_seq; everything for close and snapshots).
#
# After a power cut, App.start(recovering=True) is the reboot: read-only readers
# first (every valid snapshot equals the model state at its seq, every segment and
# the journal hold exactly attempted records), then each brick opens and must come
# back at a seq n that ends a write, with acknowledged <= n <= attempted, and
# exactly the model after n records (the queue: the same messages, contents,
# delivery counts and dead letters, in-flight ones ready again, in id order). The
# models are then cut back to n and the workload goes on from there; what recovery
# found counts as acknowledged from then on, since it was read back from the flash.
import gc
import random

import minishim
from ministore import MiniStore
from minisnap import read_snapshot, SnapshotError, SnapStore
from minilog import segment_files
from ministate import StateManager, Mutator
from miniqueue import MiniQueue, QueueFull
from powercut import call, exists
from oracles import READY, IN_FLIGHT, QueueOracle, StateOracle

KEYS = 12        # the state's dict holds at most this many items
GC_EVERY = 500   # ops between garbage collections
SHIP_BYTES = 16 * 1024  # the app ships its plain journal (close, remove, new file) past this size

INITIAL = {"count": 0, "items": {}}


class Violation(AssertionError):
    """A brick did not do what its documentation and the model say."""


# ---------------------------------------------------------------- the state's mutators

class Inc(Mutator):
    def __init__(self, by):
        self.by = by

    def apply(self, state):
        state["count"] += self.by


class Take(Mutator):
    """Changes the state, then raises when the count would go below zero: the
    manager must rebuild its state from disk and journal nothing."""

    def __init__(self, by):
        self.by = by

    def apply(self, state):
        state["count"] -= self.by
        if state["count"] < 0:
            raise ValueError("count below zero")


class Put(Mutator):
    def __init__(self, key, value):
        self.key = key
        self.value = value

    def apply(self, state):
        state["items"][self.key] = self.value


class Del(Mutator):
    """Raises KeyError for a missing key."""

    def __init__(self, key):
        self.key = key

    def apply(self, state):
        del state["items"][self.key]


MUTATORS = [Inc, Take, Put, Del]
REGISTRY = dict((cls.__name__, cls) for cls in MUTATORS)


def fill(tag, size):
    """`size` characters that name what wrote them."""
    return (tag * (size // len(tag) + 1))[:size]


def rebuild(record):
    for name in record:
        return REGISTRY[name](**record[name])


def would_raise(state, mutators):
    """True if applying `mutators` in order to `state` raises (without changing it)."""
    count = state["count"]
    keys = set(state["items"])
    for m in mutators:
        if isinstance(m, Inc):
            count += m.by
        elif isinstance(m, Take):
            count -= m.by
            if count < 0:
                return True
        elif isinstance(m, Put):
            keys.add(m.key)
        elif m.key in keys:
            keys.remove(m.key)
        else:
            return True
    return False


# ---------------------------------------------------------------- models
# The state and the queue: tests/core/oracles.py (StateOracle, QueueOracle). The plain
# journal's model is here: its records in order, cut back to what recovery found.

class JournalModel:
    """The records of the current journal file; `shipping` from the removal of a shipped
    file until its successor is open: a cut then may leave the old file or a new one."""

    def __init__(self):
        self.records = []
        self.bounds = [0]
        self.shipping = False

    def commit(self, records):
        self.records.extend(records)
        self.bounds.append(len(self.records))

    def truncate(self, n):
        self.records = self.records[:n]
        self.bounds = [b for b in self.bounds if b <= n]


def queue_problems(msgs, dropped, model):
    """Differences between a queue's messages ({id: [body, deliveries, status]}) and
    `model`, by kind: {"phantom": [...], "content": [...], "counts": [...], "missing": [...]}."""
    out = {}
    for mid in sorted(msgs):
        body, deliveries, status = msgs[mid][0], msgs[mid][1], msgs[mid][2]
        want = model.msgs.get(mid)
        if want is None:
            out.setdefault("phantom", []).append(mid)
        elif minishim.loads(body) != want[0]:
            out.setdefault("content", []).append(mid)
        elif deliveries != want[1] or status != want[2]:
            out.setdefault("counts", []).append((mid, deliveries, status, want[1], want[2]))
    for mid in sorted(model.msgs):
        if mid not in msgs:
            out.setdefault("missing", []).append(mid)
    if dropped != model.dropped:
        out["dropped"] = (dropped, model.dropped)
    return out


# ---------------------------------------------------------------- configuration

# (operation, weight). ack/nack with nothing in flight do a get instead.
SOAK_WEIGHTS = [
    ("apply", 16), ("apply_many", 6), ("snap", 2), ("sync", 2),
    ("put", 14), ("put_many", 5), ("get", 18), ("ack", 13), ("nack", 3), ("purge", 1), ("compact", 1),
    ("append", 6), ("append_many", 2),
    ("reopen_state", 1), ("reopen_queue", 1), ("reopen_journal", 1), ("restart", 1),
]


def consumer(weights, extra):
    """`weights` with a consumer (get + ack) faster by `extra`: some seeds keep the queue
    full (QueueFull, drops), others keep it near empty."""
    out = []
    for name, weight in weights:
        if name in ("get", "ack"):
            weight += extra
        out.append((name, weight))
    return out


def draw_config():
    """A configuration for one seed (random is seeded by the caller)."""
    return {
        "state_sync": random.choice(["always", "always", 2, 4]),
        "snapshot_every": random.choice([None, 8, 20, 50]),
        "snapshot_bytes": random.choice([None, None, 4096, 8192]),
        "keep": random.choice([1, 2, 2, 3]),
        "queue_sync": random.choice(["always", 2, 4, 16]),
        "max_bytes": [1500, 3000, 6000],       # one is drawn at each open
        "compact_bytes": random.choice([None, 400, 1000, 3000]),
        "max_deliveries": random.choice([None, 2, 3, 5]),
        "journal_sync": random.choice(["always", "always", 2, 3]),
        "weights": consumer(SOAK_WEIGHTS, random.choice([0, 6, 14])),
        "big": 3,                              # percent of values/messages of 800..1500 bytes
    }


def describe(cfg):
    return ("state sync=%s snap_every=%s snap_bytes=%s keep=%d; queue sync=%s compact=%s max_deliv=%s; "
            "journal sync=%s") % (
        cfg["state_sync"], cfg["snapshot_every"], cfg["snapshot_bytes"], cfg["keep"], cfg["queue_sync"],
        cfg["compact_bytes"], cfg["max_deliveries"], cfg["journal_sync"])


class Counts:
    """What the workload did (coverage), summed over runs."""

    FIELDS = ("applies", "batches", "raising", "snaps", "auto_snaps", "snap_prunes", "state_compactions",
              "puts", "put_batches", "full", "drops", "gets", "acks", "nacks", "dead", "purges",
              "checkpoints", "auto_checkpoints", "appends", "append_batches", "syncs", "reopens",
              "restarts", "journal_closes", "ships", "recoveries", "kept_unacked", "rolled_back",
              "torn_tails", "torn_tail_max", "fell_back")

    def __init__(self):
        for name in Counts.FIELDS:
            setattr(self, name, 0)

    def add(self, other):
        for name in Counts.FIELDS:
            if name.endswith("_max"):
                setattr(self, name, max(getattr(self, name), getattr(other, name)))
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self):
        return " ".join("%s=%d" % (name, getattr(self, name)) for name in Counts.FIELDS)


# ---------------------------------------------------------------- the app

class App:
    def __init__(self, root, cfg):
        self.cfg = cfg
        self.state_dir = root + "/state"
        self.queue_dir = root + "/outbox"
        self.journal_path = root + "/wal/log.jsonl"
        self.flash = None
        self.sm = self.q = self.j = None
        self.smodel = StateOracle(INITIAL, rebuild)
        self.qmodel = QueueOracle(defer=True)  # durability="puts", the default
        self.jmodel = JournalModel()
        self.acked_s = self.acked_q = self.acked_j = 0
        self.acked_puts = {}   # id -> k of each acknowledged put whose removal is not acknowledged
        self.acked_gone = {}   # id -> kind of every acknowledged ack/drop/purge
        self.scanned_q = 0     # queue events up to this seq are in acked_puts/acked_gone
        self.in_flight = []    # ids this session delivered and has not acked or nacked
        self.qparams = (0, "reject")
        self.next_k = 0        # messages, values and journal records are numbered for life
        self.ops = 0
        self.trace = []        # the last operations, for failure reports
        self.counts = Counts()
        self.lost = 0          # acknowledged records/events found missing
        self.kinds = {}        # violation kind -> count (lost puts, acks undone, order, phantom ...)
        self.last_fail = (None, 0)

    # ------------------------------------------------------------ helpers

    def acked_total(self):
        return self.acked_s + self.acked_q + self.acked_j

    def fail(self, kind, message, lost=0):
        """Count and raise a Violation; `lost`: acknowledged records/events it found missing."""
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.lost += lost
        self.last_fail = (kind, lost)
        raise Violation("%s: %s" % (kind, message))

    def forget_last_fail(self):
        """Take back the counts of the last Violation (it came after the power was off)."""
        kind, lost = self.last_fail
        self.kinds[kind] -= 1
        if not self.kinds[kind]:
            del self.kinds[kind]
        self.lost -= lost
        self.last_fail = (None, 0)

    def call(self, what, fn, *args):
        return call(self.flash, what, fn, *args)

    def tag(self):
        self.next_k += 1
        return self.next_k

    def new_message(self):
        k = self.tag()
        size = random.randint(800, 1500) if random.randrange(100) < self.cfg["big"] else random.randint(0, 160)
        return {"k": k, "fill": fill("m%d." % k, size)}

    def new_record(self):
        k = self.tag()
        size = random.randint(800, 1500) if random.randrange(100) < self.cfg["big"] else random.randint(0, 120)
        return {"j": k, "fill": fill("j%d." % k, size)}

    def new_mutator(self):
        r = random.randrange(100)
        if r < 30:
            return Inc(by=random.randint(1, 9))
        if r < 70:
            k = self.tag()
            size = random.randint(800, 1500) if random.randrange(100) < self.cfg["big"] else random.randint(1, 200)
            return Put(key="k%d" % random.randrange(KEYS), value=fill("v%d." % k, size))
        if r < 85:
            keys = sorted(self.smodel.state["items"])
            if keys and random.randrange(5):
                return Del(key=random.choice(keys))
            return Del(key="k%d" % random.randrange(KEYS))  # often missing: the mutator raises
        return Take(by=random.randint(1, 30))

    # ------------------------------------------------------------ opening and checking

    def open_state(self, recovering):
        cfg = self.cfg
        sm, _ = self.call("open state", StateManager.open, self.state_dir, INITIAL, MUTATORS,
                          cfg["snapshot_every"], cfg["snapshot_bytes"], cfg["keep"], cfg["state_sync"])
        self.sm = sm
        n = sm.seq
        model = self.smodel
        attempted = len(model.records)
        if n < self.acked_s:
            self.fail("state records lost", "acked %d, recovered seq %d" % (self.acked_s, n), lost=self.acked_s - n)
        if n > attempted:
            self.fail("state phantom", "recovered seq %d, only %d records attempted" % (n, attempted))
        if n not in model.bounds:
            self.fail("state torn write", "recovered seq %d does not end a write" % n)
        if not recovering and n != attempted:
            self.fail("state records lost", "clean reopen at seq %d, %d attempted" % (n, attempted))
        self.note_recovery(recovering, n, self.acked_s, attempted)
        model.truncate(n)
        if sm.state != model.state:
            self.fail("state differs", "recovered seq %d, state %r, model %r" % (n, sm.state, model.state))
        if sm.snapshot_seq > n:
            self.fail("state snapshot", "snapshot_seq %d beyond seq %d" % (sm.snapshot_seq, n))
        if sm.fell_back:
            self.counts.fell_back += 1
        self.acked_s = n

    def open_queue(self, recovering):
        cfg = self.cfg
        max_bytes = random.choice(cfg["max_bytes"])
        on_full = random.choice(["reject", "drop_oldest"])
        q, _ = self.call("open queue", MiniQueue.open, self.queue_dir, max_bytes, on_full,
                         cfg["max_deliveries"], cfg["queue_sync"], cfg["compact_bytes"])
        self.q = q
        self.qparams = (max_bytes, on_full)
        self.in_flight = []
        n = q.seq
        model = self.qmodel
        if n < self.acked_q:
            self.fail("queue events lost", "acked %d, recovered seq %d" % (self.acked_q, n), lost=self.acked_q - n)
        if n > model.seq:
            self.fail("queue phantom", "recovered seq %d, only %d events attempted" % (n, model.seq))
        if n not in model.bounds:
            self.fail("queue torn write", "recovered seq %d does not end a write" % n)
        if not recovering and n != model.seq:
            self.fail("queue events lost", "clean reopen at seq %d, %d attempted" % (n, model.seq))
        self.note_recovery(recovering, n, self.acked_q, model.seq)
        if n == model.seq:
            model.reopen()
        else:
            model = self.qmodel = model.replayed(n)
        self.check_queue(q._entries(), q.dropped, "after open")
        if q.in_flight():
            self.fail("queue in flight", "%d messages in flight after open" % q.in_flight())
        ready = q._ready_ids()
        if ready != model.ready():
            self.fail("queue order", "ready ids %r, model %r" % (ready, model.ready()))
        self.acked_q = n
        self.scan_acked_queue()

    def note_recovery(self, recovering, n, acked, attempted):
        if recovering:
            self.counts.recoveries += 1
            if n > acked:
                self.counts.kept_unacked += 1  # durable although its call never returned
            if n < attempted:
                self.counts.rolled_back += 1   # unacknowledged writes the cut took away

    def check_queue(self, msgs, dropped, what):
        """The explicit invariants first (for the counts), then equality with the model."""
        model = self.qmodel
        lost = [mid for mid in sorted(self.acked_puts) if mid not in msgs and mid not in model.gone]
        if lost:
            self.fail("acked puts lost", "%s: ids %r" % (what, lost), lost=len(lost))
        undone = [mid for mid in sorted(msgs) if mid in self.acked_gone]
        if undone:
            self.fail("acked acks undone", "%s: ids %r are back (%r)" % (
                what, undone, [self.acked_gone[mid] for mid in undone]), lost=len(undone))
        diff = queue_problems(msgs, dropped, model)
        for kind in ("phantom", "content", "counts", "missing", "dropped"):
            if kind in diff:
                self.fail("queue " + kind, "%s: %r" % (what, diff[kind]))

    def scan_acked_queue(self):
        """Register the puts and removals among the newly acknowledged events."""
        records = self.qmodel.records
        for seq in range(self.scanned_q + 1, self.acked_q + 1):
            event = records[seq]
            for kind in event:
                arg = event[kind]
            if kind == "put":
                self.acked_puts[seq] = arg["k"]
            elif kind in ("ack", "drop", "purge"):
                self.acked_gone[arg] = kind
                self.acked_puts.pop(arg, None)
        self.scanned_q = max(self.scanned_q, self.acked_q)

    def open_journal(self, recovering):
        found = []

        def collect(seq, record):
            found.append(record)
        j, _ = self.call("open journal", MiniStore.open, self.journal_path, self.cfg["journal_sync"], 0, collect)
        self.j = j
        n = j.seq
        model = self.jmodel
        if model.shipping and n == 0:
            # The shipped file is gone and a new one started: what it held was shipped.
            self.jmodel = JournalModel()
            self.acked_j = 0
            return
        model.shipping = False
        attempted = len(model.records)
        if n < self.acked_j:
            self.fail("journal records lost", "acked %d, recovered seq %d" % (self.acked_j, n), lost=self.acked_j - n)
        if n > attempted:
            self.fail("journal phantom", "recovered seq %d, only %d attempted" % (n, attempted))
        if n not in model.bounds:
            self.fail("journal torn write", "recovered seq %d does not end a write" % n)
        if not recovering and n != attempted:
            self.fail("journal records lost", "clean reopen at seq %d, %d attempted" % (n, attempted))
        if len(found) != n:
            self.fail("journal replay", "replay gave %d records, seq %d" % (len(found), n))
        for i in range(n):
            if found[i] != model.records[i]:
                self.fail("journal content", "seq %d holds %r" % (i + 1, found[i]))
        self.note_recovery(recovering, n, self.acked_j, attempted)
        model.truncate(n)
        self.acked_j = n

    def inspect(self):
        """Read-only look at the flash after a cut, before any brick opens it."""
        out = {}
        if exists(self.state_dir):
            snaps = SnapStore(self.state_dir).files()
            valid = []
            for number, path in snaps:
                try:
                    state, seq = read_snapshot(path)
                except (SnapshotError, ValueError):
                    continue
                valid.append((seq, state, path))
            attempted = len(self.smodel.records)
            for seq, state, path in valid:
                if seq > attempted:
                    self.fail("state snapshot", "%s at seq %d, only %d attempted" % (path, seq, attempted))
            states = self.smodel.states_at([seq for seq, state, path in valid])
            for seq, state, path in valid:
                if state != states[seq]:
                    self.fail("state snapshot", "%s at seq %d differs from the model" % (path, seq))
            for number, path in segment_files(self.state_dir):
                reader = MiniStore.stream(path)
                for seq, rec in reader:
                    if seq > attempted or rec != self.smodel.records[seq - 1]:
                        self.fail("state phantom", "%s: seq %d holds %r" % (path, seq, rec))
                self.note_torn(reader.torn)
            out["state"] = StateManager.load(self.state_dir, INITIAL, MUTATORS)
        if exists(self.queue_dir):
            for number, path in segment_files(self.queue_dir):
                reader = MiniStore.stream(path)
                for seq, rec in reader:
                    if seq > self.qmodel.seq or rec != self.qmodel.records[seq]:
                        self.fail("queue phantom", "%s: seq %d holds %r" % (path, seq, rec))
                self.note_torn(reader.torn)
            out["queue"] = MiniQueue.inspect(self.queue_dir)
        if exists(self.journal_path):
            records = MiniStore.replay(self.journal_path)
            self.note_torn(records.torn)
            for i in range(len(records)):
                if i >= len(self.jmodel.records) or records[i] != self.jmodel.records[i]:
                    self.fail("journal phantom", "seq %d holds %r" % (i + 1, records[i]))
            out["journal"] = len(records)
        return out

    def note_torn(self, torn):
        """Count the torn tails recovery will cut (a crash left part of a write)."""
        if torn is not None and torn.length:
            self.counts.torn_tails += 1
            self.counts.torn_tail_max = max(self.counts.torn_tail_max, torn.length)

    def compare_readonly(self, found):
        """What the read-only readers saw must be what the writers recovered."""
        if "state" in found:
            state, seq, snap_seq = found["state"]
            if seq != self.sm.seq or state != self.sm.state:
                self.fail("read-only differs", "StateManager.load gave seq %d, open seq %d" % (seq, self.sm.seq))
        if "queue" in found:
            seen = found["queue"]
            msgs = {}
            entries = seen._entries()
            for mid in entries:
                body, deliveries, status = entries[mid]
                msgs[mid] = [body, deliveries, READY if status == IN_FLIGHT else status]
            if seen.last_seq != self.q.seq or queue_problems(msgs, seen.dropped, self.qmodel):
                self.fail("read-only differs", "MiniQueue.inspect gave seq %d, open seq %d: %r" % (
                    seen.last_seq, self.q.seq, queue_problems(msgs, seen.dropped, self.qmodel)))
        if "journal" in found and found["journal"] != self.j.seq:
            self.fail("read-only differs", "MiniStore.replay gave %d records, open seq %d" % (
                found["journal"], self.j.seq))

    def start(self, flash, recovering, inspect=False):
        """Open the three bricks on the filesystem at MOUNT and check them against the
        models: after a power cut when `recovering` (a prefix holding every acknowledged
        record), else exactly. `inspect`: read the flash read-only first and compare.
        Raises Violation."""
        self.flash = flash
        found = self.inspect() if inspect else None
        self.open_state(recovering)
        self.open_queue(recovering)
        self.open_journal(recovering)
        if found is not None and not flash.dead:
            self.compare_readonly(found)

    def abandon(self):
        """Drop every open handle without writing anything, as a reboot would."""
        for name in ("sm", "q"):
            brick = getattr(self, name)
            setattr(self, name, None)
            if brick is None:
                continue
            log, brick._log = brick._log, None
            if log is None:
                continue
            if not log.store.closed:
                log.store._abandon()
            log.lock.release()
        j, self.j = self.j, None
        if j is not None and not j.closed:
            j._abandon()
        self.in_flight = []

    def close_all(self):
        self.close_state()
        self.close_queue()
        self.close_journal()

    def close_state(self):
        sm, self.sm = self.sm, None
        _, acked = self.call("close state", sm.close)
        if acked:
            self.acked_s = len(self.smodel.records)

    def close_queue(self):
        q, self.q = self.q, None
        self.qmodel.flush()
        _, acked = self.call("close queue", q.close)
        if acked:
            self.acked_q = self.qmodel.seq
            self.scan_acked_queue()

    def close_journal(self):
        j, self.j = self.j, None
        _, acked = self.call("close journal", j.close)
        self.counts.journal_closes += 1
        if acked:
            self.acked_j = len(self.jmodel.records)

    # ------------------------------------------------------------ the operations

    def step(self):
        """Draw one operation and run it. Raises at a power cut (OSError) or on a Violation."""
        weights = self.cfg["weights"]
        total = 0
        for name, weight in weights:
            total += weight
        r = random.randrange(total)
        for name, weight in weights:
            r -= weight
            if r < 0:
                break
        if name in ("ack", "nack") and not self.in_flight:
            name = "get"
        self.trace.append(name)
        if len(self.trace) > 12:
            self.trace.pop(0)
        self.ops += 1
        if self.ops % GC_EVERY == 0:
            # Collected only when the heap is full, long-lived objects end up spread
            # over all of it, and a large list or a flash copy finds no free run.
            gc.collect()
        getattr(self, "op_" + name)()

    # -- state

    def op_apply(self):
        self.state_commit([self.new_mutator()], False)

    def op_apply_many(self):
        self.state_commit([self.new_mutator() for _ in range(random.randint(2, 5))], True)

    def state_commit(self, mutators, batch):
        sm = self.sm
        model = self.smodel
        before_snap = sm.snapshot_seq
        before_first = sm._log.segments[0].number
        fn = sm.apply_many if batch else sm.apply
        arg = mutators if batch else mutators[0]
        if would_raise(model.state, mutators):
            self.counts.raising += 1
            error, acked = self.call("apply (raises)", raised, fn, arg)
            if not isinstance(error, (KeyError, ValueError)):
                self.fail("raising mutator", "apply returned %r instead of raising" % (error,))
            if sm.seq != len(model.records) or sm.state != model.state:
                self.fail("raising mutator", "changed the state or seq (seq %d)" % sm.seq)
        else:
            model.commit(mutators)
            seq, acked = self.call("apply", fn, arg)
            n = len(model.records)
            if seq != n or sm.seq != n:
                self.fail("state seq", "apply returned %d, model %d" % (seq, n))
            if sm.state != model.state:
                self.fail("state differs", "after apply at seq %d" % n)
            if batch:
                self.counts.batches += 1
            else:
                self.counts.applies += 1
            if sm.snapshot_seq != before_snap:
                self.counts.auto_snaps += 1
                self.note_snapshot(sm, before_first)
        if acked and not sm.closed:
            self.acked_s = max(self.acked_s, sm._log.store.durable_seq)

    def note_snapshot(self, sm, before_first):
        if sm._log.segments[0].number != before_first:
            self.counts.state_compactions += 1

    def op_snap(self):
        sm = self.sm
        keep = self.cfg["keep"]
        before_first = sm._log.segments[0].number
        before_files = len(SnapStore(self.state_dir, keep).files())
        before_valid = len(SnapStore(self.state_dir, keep).valid())
        seq, acked = self.call("create_snapshot", sm.create_snapshot)
        n = len(self.smodel.records)
        if seq != n or sm.snapshot_seq != n:
            self.fail("state seq", "create_snapshot returned %d, model %d" % (seq, n))
        self.counts.snaps += 1
        self.note_snapshot(sm, before_first)
        snaps = SnapStore(self.state_dir, keep)
        files = snaps.files()
        valid = snaps.valid()
        if acked and (len(valid) != len(files) or len(valid) != min(keep, before_valid + 1) or valid[0][0] != n):
            # The damaged ones and the valid ones beyond `keep` are removed; the newest is at n.
            self.fail("state snapshots", "after a snapshot at %d with keep=%d (%d valid before): "
                      "files %r, valid at %r" % (
                n, keep, before_valid, [path for number, path in files], [seq for seq, path in valid]))
        if len(files) <= before_files:
            self.counts.snap_prunes += 1
        if acked:
            self.acked_s = n

    def op_sync(self):
        which = random.randrange(3)
        self.counts.syncs += 1
        if which == 0:
            _, acked = self.call("state sync", self.sm.sync)
            if acked:
                self.acked_s = len(self.smodel.records)
        elif which == 1:
            self.qmodel.flush()
            _, acked = self.call("queue sync", self.q.sync)
            if acked:
                self.acked_q = self.qmodel.seq
                self.scan_acked_queue()
        else:
            _, acked = self.call("journal sync", self.j.sync)
            if acked:
                self.acked_j = len(self.jmodel.records)

    def op_reopen_state(self):
        self.counts.reopens += 1
        self.close_state()
        self.open_state(False)

    # -- queue

    def queue_call(self, what, fn, *args):
        """Run a queue call; add the checkpoint a compaction in it wrote to the model."""
        q = self.q
        log = q._log
        number = log.segments[-1].number
        model = self.qmodel
        returned = False
        try:
            got, acked = self.call(what, fn, *args)
            returned = True
        finally:
            if log.segments[-1].number != number:
                base = log.segments[-1].base_seq
                # The events kept in RAM (deferred) lead the checkpoint in the new segment
                # (FORMAT.md 5.4): it starts after the last event written before them.
                if base != model.flushed:
                    self.fail("queue compaction", "a segment starts after seq %d, model seq %d, of which %d "
                              "written" % (base, model.seq, model.flushed))
                model.checkpoint()  # if the call raised, the cut may have stopped it anywhere in it
                if what != "compact":
                    self.counts.auto_checkpoints += 1
                if returned and len(log.segments) != 1:
                    self.fail("queue compaction", "%d segments after a compaction" % len(log.segments))
        if q.seq != model.seq:  # q.seq counts the gets and acks it defers (FORMAT.md 5.2)
            self.fail("queue seq", "%s: queue seq %d, model %d" % (what, q.seq, model.seq))
        if acked:
            self.acked_q = max(self.acked_q, log.store.durable_seq)
            self.scan_acked_queue()
        return got

    def put_messages(self, msgs):
        max_bytes, on_full = self.qparams
        model = self.qmodel
        dropped = model.dropped
        want = model.put_many(msgs, max_bytes, on_full)
        if len(msgs) == 1:
            got = self.queue_call("put", put_or_full, self.q.put, msgs[0])
            if want is not None:
                want = want[0]
        else:
            got = self.queue_call("put_many", put_or_full, self.q.put_many, msgs)
        if got != want:
            self.fail("queue put", "put returned %r, the model %r" % (got, want))
        if want is None:
            self.counts.full += 1
        self.counts.drops += model.dropped - dropped

    def op_put(self):
        self.counts.puts += 1
        self.put_messages([self.new_message()])

    def op_put_many(self):
        self.counts.put_batches += 1
        self.put_messages([self.new_message() for _ in range(random.randint(2, 5))])

    def op_get(self):
        model = self.qmodel
        dead = len(model.dead_ids())
        want = model.get(self.cfg["max_deliveries"])
        got = self.queue_call("get", self.q.get)
        self.counts.dead += len(model.dead_ids()) - dead
        if got is None or want is None:
            if got != want:
                self.fail("queue phantom" if want is None else "queue get", "get returned %r, the model %r" % (
                    got, want))
            return
        if got[0] != want[0] or got[1] != want[1]:
            kind = "queue order" if got[0] in model.msgs else "queue phantom"
            self.fail(kind, "get returned id %r %r, the model id %r" % (got[0], got[1], want[0]))
        self.counts.gets += 1
        self.in_flight.append(got[0])

    def take_in_flight(self):
        return self.in_flight.pop(random.randrange(len(self.in_flight)))

    def op_ack(self):
        mid = self.take_in_flight()
        self.qmodel.ack(mid)
        self.queue_call("ack", self.q.ack, mid)
        self.counts.acks += 1

    def op_nack(self):
        mid = self.take_in_flight()
        self.qmodel.nack(mid)
        self.queue_call("nack", self.q.nack, mid)
        self.counts.nacks += 1

    def op_purge(self):
        want = self.qmodel.purge_dead()
        got = self.queue_call("purge", self.q.purge_dead)
        if got != want:
            self.fail("queue purge", "purge_dead returned %r, the model %r" % (got, want))
        self.counts.purges += want

    def op_compact(self):
        want = len(self.qmodel.msgs)
        got = self.queue_call("compact", self.q.compact)
        if got != want:
            self.fail("queue compaction", "compact returned %r, the model %r" % (got, want))
        self.counts.checkpoints += 1

    def op_reopen_queue(self):
        self.counts.reopens += 1
        self.close_queue()
        self.open_queue(False)

    # -- journal

    def journal_write(self, records):
        self.jmodel.commit(records)
        if len(records) == 1:
            seq, acked = self.call("append", self.j.append, records[0])
        else:
            seq, acked = self.call("append_many", self.j.append_many, records)
        if seq != len(self.jmodel.records):
            self.fail("journal seq", "append returned %d, model %d" % (seq, len(self.jmodel.records)))
        if acked:
            self.acked_j = max(self.acked_j, self.j.durable_seq)
            if self.j.size >= SHIP_BYTES:
                self.ship_journal()

    def ship_journal(self):
        """Ship the journal as an app would upload it: close it, remove it, start a new one."""
        self.counts.ships += 1
        self.close_journal()
        self.jmodel.shipping = True
        self.call("remove journal", minishim.remove_durably, self.journal_path)
        self.open_journal(False)
        if self.j.seq != 0:
            self.fail("journal ship", "a new journal after the removal starts at seq %d" % self.j.seq)

    def op_append(self):
        self.counts.appends += 1
        self.journal_write([self.new_record()])

    def op_append_many(self):
        self.counts.append_batches += 1
        self.journal_write([self.new_record() for _ in range(random.randint(2, 5))])

    def op_reopen_journal(self):
        self.counts.reopens += 1
        self.close_journal()
        self.open_journal(False)

    def op_restart(self):
        self.counts.restarts += 1
        self.close_all()
        self.start(self.flash, False)

    # ------------------------------------------------------------ the end

    def drain(self):
        """get + ack until the queue is empty, each checked against the model; return the ids in order."""
        ids = []
        while True:
            model = self.qmodel
            want = model.get(self.cfg["max_deliveries"])
            got = self.queue_call("get", self.q.get)
            if got is None or want is None:
                if got != want:
                    self.fail("queue drain", "get returned %r, the model %r" % (got, want))
                return ids
            if got[0] != want[0] or got[1] != want[1]:
                self.fail("queue order", "drain got id %r, the model id %r" % (got[0], want[0]))
            if ids and got[0] <= ids[-1]:
                self.fail("queue order", "drain delivered %d after %d" % (got[0], ids[-1]))
            ids.append(got[0])
            self.qmodel.ack(got[0])
            self.queue_call("ack", self.q.ack, got[0])


def raised(fn, arg):
    """Run fn(arg) and return the exception it raises (or its result if it does not)."""
    try:
        return fn(arg)
    except (KeyError, ValueError) as exc:
        return exc


def put_or_full(fn, arg):
    try:
        return fn(arg)
    except (QueueFull, ValueError):  # ValueError: it can never fit; nothing is written either way
        return None
