# Power-cut test of miniqueue on simulated flash (MicroPython unix port).
#   micropython -X heapsize=64M tests/mp/powercut_miniqueue.py [FS SYNC ...]
# FS is "lfs2-esp32", "lfs2-rp2040", "fat-esp32" or "fat-rp2040"; SYNC is
# "always" or an int (the batch policy). With no arguments every configuration
# runs. The sweep itself is tests/mp/powercut.py: the workload runs once uncut to
# count its program/erase ops, then the power is cut at every one of them, in the
# every mode of blockdev.py (raise, torn, drop, reorder) on NOR flash semantics,
# with nothing reaching the flash after the cut.
#
# The workload is a MiniQueue (max_deliveries=2, compact_bytes=600) taken through
# put, put_many, get, ack, nack, a dead letter, a QueueFull refusal, a message of
# more than one 4096-byte block (and a checkpoint restating it), a close and a
# reopen with in-flight messages, then (reopened with max_bytes=1500 and
# on_full="drop_oldest") drops of the oldest ready messages. Space is reclaimed by
# several automatic compactions (checkpoint in a new segment, then the older
# segments removed).
#
# A reference model of the queue runs beside it: it predicts every event the queue
# journals (and so every id), what each call returns, and the queue after every
# prefix of the journal. The model and the queue are compared after every call;
# compactions are recognised when the queue starts a new segment, and the model
# then adds the checkpoint events (which do not change the queue). Acknowledged:
# the events a call that returned with the power on made durable (all of them
# under sync="always"; under a batch policy, up to store.durable_seq).
#
# After each cut, a copy of the image is mounted with a fresh vfs object (as after
# a reboot) and:
#   1. read-only: every journal segment holds exactly the attempted events;
#   2. MiniQueue.open succeeds; its seq n ends a write (a batch), attempted >= n >=
#      acknowledged, and the queue (messages, contents, delivery counts, dead
#      letters, drop counter) is the model after n events;
#   3. the queue is drained (get + ack until empty) and checked: every acknowledged
#      put is delivered or is a dead letter, unless the model acked or dropped it
#      within those n events ("acked puts lost"); no message whose ack was
#      acknowledged is delivered again ("acked redelivered"); deliveries come in
#      ascending id order ("order violations"); every id names a message that was
#      put, with that message's content; exactly the model's messages are
#      delivered, and exactly its dead letters (plus those at max_deliveries) remain;
#   4. an explicit compaction leaves one segment; after another reboot the queue
#      reopens empty but for the same dead letters.
# Each (configuration, cut point, mode) is one check; ends with "N passed, N failed".
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
TOP = HERE + "/../.."
sys.path.insert(0, TOP + "/shared")
sys.path.insert(0, HERE)
sys.path.append(TOP + "/tests/core")  # oracles.py

import powercut  # noqa: E402
from powercut import MOUNT, call, exists, reboot  # noqa: E402
import minishim  # noqa: E402
from ministore import MiniStore  # noqa: E402
from minilog import segment_files  # noqa: E402
from miniqueue import MiniQueue, QueueFull  # noqa: E402
from oracles import DEAD, QueueOracle  # noqa: E402

DIR = MOUNT + "/data/queue"  # does not exist on the fresh filesystem: open creates it
CONFIGS = [
    ("lfs2-esp32", "always"), ("lfs2-esp32", 4),
    ("lfs2-rp2040", "always"), ("lfs2-rp2040", 4),
    ("fat-esp32", "always"), ("fat-esp32", 4),
]
MAX_DELIVERIES = 2
COMPACT_BYTES = 600
# Open parameters of the two phases (neither is stored in the directory).
PHASE_A = {"max_bytes": 4800, "on_full": "reject"}       # room for the > 1 block message
PHASE_B = {"max_bytes": 1500, "on_full": "drop_oldest"}  # a small ring buffer


def message(k, size):
    """Message k: JSON whose content names it, with `size` characters of fill."""
    tag = "m%d." % k
    return {"k": k, "fill": (tag * (size // len(tag) + 1))[:size]}


# The workload. Messages are named by k (their ids are journal seqs, found by the
# model); ("get", k) is a get that must deliver message k.
WORKLOAD = [
    ("open", PHASE_A),                              # creates the directory
    ("put", 0, 20),
    ("many", [(1, 150), (2, 40), (3, 300)]),
    ("get", 0), ("ack", 0),
    ("get", 1), ("nack", 1),
    ("put", 4, 4150),                               # > 1 block; compaction 1 restates it (> 1 block)
    ("full", 5, 300),                               # QueueFull: nothing is written
    ("get", 1), ("nack", 1),                        # 1 has been delivered twice
    ("get", 2),                                     # 1 becomes a dead letter, then 2 is delivered
    ("ack", 2),
    ("get", 3),                                     # in flight across the close
    ("get", 4), ("ack", 4),
    ("close",),
    ("open", PHASE_B),                              # reopen in the middle: 3 is ready again
    ("many", [(6, 200), (7, 500), (8, 30)]),
    ("put", 9, 400),                                # drops 3
    ("get", 6), ("ack", 6),
    ("many", [(10, 600), (11, 100)]),               # drops 7
    ("get", 8), ("nack", 8), ("get", 8), ("ack", 8),
    ("get", 9), ("ack", 9),
    ("get", 10),                                    # in flight at the end
    ("put", 12, 50),
    ("close",),
]
MESSAGES = {}
for _step in WORKLOAD:
    if _step[0] in ("put", "full"):
        MESSAGES[_step[1]] = message(_step[1], _step[2])
    elif _step[0] == "many":
        for _k, _size in _step[1]:
            MESSAGES[_k] = message(_k, _size)
assert len(minishim.dumps(MESSAGES[4])) > 4096


# ---------------------------------------------------------------- the reference model

class Model(QueueOracle):
    """The queue oracle (tests/core/oracles.py: the queue as FORMAT.md section 5
    defines it, event by event), with what this sweep compares.

    states[n] is the queue after the first n events, as a reopen shows it (in-flight
    messages ready again): (((id, deliveries, dead?), ...), dropped). Checkpoint
    events leave it as it is. ids[k] is the id of message k.
    """

    def __init__(self):
        QueueOracle.__init__(self, defer=True)  # durability="puts", the default
        self.ids = {}
        self.states = [((), 0)]

    def state(self):
        out = []
        for mid in sorted(self.msgs):
            entry = self.msgs[mid]
            out.append((mid, entry[1], entry[2] == DEAD))
        return tuple(out), self.dropped

    def apply(self, event):
        QueueOracle.apply(self, event)
        if "put" in event:
            self.ids[event["put"]["k"]] = self.seq
        self.states.append(self.state())

    def _dropped_event(self, g, mid):
        # The states after the dropped get: one delivery of mid fewer.
        del self.states[g]
        for n in range(g, len(self.states)):
            entries, dropped = self.states[n]
            self.states[n] = (tuple((m, d - 1 if m == mid else d, dead) for m, d, dead in entries), dropped)


# ---------------------------------------------------------------- the workload

def open_queue(sync, params):
    return MiniQueue.open(DIR, max_bytes=params["max_bytes"], on_full=params["on_full"],
                          max_deliveries=MAX_DELIVERIES, sync=sync, compact_bytes=COMPACT_BYTES)


def abandon(q):
    """Drop an open queue without writing anything, as a reboot would."""
    log, q._log = q._log, None
    if log is None:
        return
    if not log.store.closed:
        log.store._abandon()
    log.lock.release()


def put_or_full(q, msgs):
    try:
        return q.put_many(msgs)
    except (QueueFull, ValueError):  # ValueError: it can never fit; nothing is written either way
        return None


def queue_state(q, model):
    """The queue's messages as Model.state() has them, its drop counter, and the first id
    whose content is not the message the model put under that id (or None)."""
    out = []
    wrong = None
    entries = q._entries()
    for mid in sorted(entries):
        body, deliveries, status = entries[mid]
        out.append((mid, deliveries, status == DEAD))
        if wrong is None and minishim.loads(body) != model.puts.get(mid):
            wrong = mid
    return tuple(out), q.dropped, wrong


def check_open(q, model, what):
    if q.seq != model.seq:
        raise AssertionError("%s: seq %d, model %d" % (what, q.seq, model.seq))
    msgs, dropped, wrong = queue_state(q, model)
    want = model.state()
    if (msgs, dropped) != want or wrong is not None:
        raise AssertionError("%s: queue %r (dropped %d, wrong content %r), model %r" % (
            what, msgs, dropped, wrong, want))


def account(q, log, number, model, returned):
    """After a call on an open queue: add the checkpoint it wrote (if any) to the model.

    `log` and `number` are the queue's SegmentedLog and its newest segment number
    before the call. A new segment means a compaction started, at the model's seq.
    """
    if log.segments[-1].number != number:
        base = log.segments[-1].base_seq
        if base != model.seq:
            raise AssertionError("a segment starts after seq %d, model seq %d" % (base, model.seq))
        model.checkpoint()  # if the call raised, the cut may have stopped it anywhere in it
        if returned and len(log.segments) != 1:
            raise AssertionError("after a compaction, %d segments" % len(log.segments))
    seq = q.seq if not q.closed else log.seq  # q.seq counts the events it defers (FORMAT.md 5.2)
    if returned and seq != model.seq:
        raise AssertionError("queue seq %d, model seq %d" % (seq, model.seq))
    if not returned and seq > model.seq:
        raise AssertionError("queue seq %d beyond the model's %d" % (seq, model.seq))


def run_workload(flash, sync):
    """Run WORKLOAD on the filesystem mounted at MOUNT; never raises."""
    out = powercut.Outcome()
    model = Model()
    out.info["model"] = model
    q = None
    error = None
    try:
        for step in WORKLOAD:
            op = step[0]
            if op == "open":
                q, acked = call(flash, op, open_queue, sync, step[1])
                model.reopen()
                check_open(q, model, "open")
                if acked:
                    out.acked = max(out.acked, q._log.store.durable_seq)
                continue
            if op == "close":
                model.flush()
                _, acked = call(flash, op, q.close)
                if acked:
                    out.acked = model.seq  # close syncs every event
                q = None
                continue
            log = q._log
            number = log.segments[-1].number
            returned = False
            try:
                if op in ("put", "many", "full"):
                    msgs = [MESSAGES[step[1]]] if op in ("put", "full") else [MESSAGES[k] for k, s in step[1]]
                    want = model.put_many(msgs, q.max_bytes, q.on_full)
                    if (want is None) != (op == "full"):
                        raise AssertionError("the model says %r to %r" % (want, step))
                    out.attempted = model.seq
                    got, acked = call(flash, op, put_or_full, q, msgs)
                elif op == "get":
                    want = model.get(MAX_DELIVERIES)
                    if want is None or want[1]["k"] != step[1]:
                        raise AssertionError("the model delivers %r, not message %d" % (want, step[1]))
                    out.attempted = model.seq
                    got, acked = call(flash, op, q.get)
                else:
                    mid = model.ids[step[1]]
                    if op == "ack":
                        model.ack(mid)
                    else:
                        model.nack(mid)
                    out.attempted = model.seq
                    got, acked = call(flash, op, q.ack if op == "ack" else q.nack, mid)
                    want = None
                returned = True
            finally:
                account(q, log, number, model, returned)
                out.attempted = model.seq
            if got != want:
                raise AssertionError("%r returned %r, the model %r" % (step, got, want))
            if acked:  # every op of the call happened before the cut
                durable = log.store.durable_seq
                # Puts are durable when they return; gets, acks and nacks with the next put,
                # sync or close (durability="puts", FORMAT.md 5.2).
                if sync == "always" and op in ("put", "many") and durable != model.seq:
                    raise AssertionError("%r: durable_seq %d != %d" % (step, durable, model.seq))
                out.acked = max(out.acked, durable)
    except Exception as exc:
        error = exc
    left_open = q is not None and not q.closed
    if left_open:
        abandon(q)
    return powercut.finish(flash, out, error, left_open)


# ---------------------------------------------------------------- after the cut

class Stats:
    def __init__(self):
        self.lost = 0          # acknowledged puts neither delivered, dead, nor acked/dropped
        self.redelivered = 0   # messages delivered again although their ack was acknowledged
        self.order = 0         # deliveries out of ascending id order
        self.phantom = 0       # deliveries of ids never put or with the wrong content
        self.nodir = 0         # cuts before the queue directory existed
        self.torn = 0          # recoveries that found a segment with a torn header or tail
        self.segments = 0      # recoveries that found more than one segment
        self.in_ckpt = 0       # recoveries that ended inside an unfinished checkpoint
        self.unacked = 0       # recoveries that kept events beyond the acknowledged ones
        self.delivered = 0     # messages delivered by the drains
        self.dead = 0          # dead letters after the drains

    def reset(self):
        self.__init__()


def inspect(model, stats):
    """Read-only look at DIR before anything opens it; return None or what is wrong."""
    if not exists(DIR):
        stats.nodir += 1
        return None
    segments = segment_files(DIR)
    if len(segments) > 1:
        stats.segments += 1
    torn = False
    for number, path in segments:
        reader = MiniStore.stream(path)
        for seq, rec in reader:
            if seq > model.seq or rec != model.records[seq]:
                return "%s: seq %d holds %r, not the attempted event" % (path, seq, rec)
        if reader.torn is not None:
            torn = True
    if torn:
        stats.torn += 1
    return None


def drain(q):
    """get + ack until the queue is empty; return [(id, message)] in delivery order."""
    out = []
    while True:
        got = q.get()
        if got is None:
            return out
        out.append(got)
        q.ack(got[0])


def expected_drain(model, n):
    """([ids] a drain of the queue after n events delivers, [(id, deliveries)] dead after it)."""
    entries, dropped = model.states[n]
    deliver, dead = [], []
    for mid, deliveries, is_dead in entries:
        if is_dead or deliveries >= MAX_DELIVERIES:
            dead.append((mid, deliveries))
        else:
            deliver.append(mid)
    return deliver, dead


def verify(kind, geometry, flash, sync, out, stats):
    """Reboot on a copy of `flash`, check and drain the queue; return None or what is wrong."""
    model = out.info["model"]
    try:
        image = reboot(kind, geometry, flash)
    except Exception as exc:
        return "mount failed: %r" % (exc,)
    try:
        problem = inspect(model, stats)
    except Exception as exc:
        problem = "reading the directory failed: %r" % (exc,)
    if problem is not None:
        return problem
    try:
        q = open_queue(sync, PHASE_B)
    except Exception as exc:
        return "open failed: %r" % (exc,)
    problems = []
    try:
        n = q.seq
        if n > model.seq:
            problems.append("recovered seq %d, but only %d events were attempted" % (n, model.seq))
        elif n not in model.bounds:
            problems.append("recovered seq %d: not the end of a write" % n)
        if n < out.acked:
            problems.append("acknowledged events lost: acked %d, recovered seq %d" % (out.acked, n))
        if n > out.acked:
            stats.unacked += 1
        for first, last in model.checkpoints:
            if first <= n < last:
                stats.in_ckpt += 1
        n = min(n, model.seq)
        msgs, dropped, wrong = queue_state(q, model)
        if wrong is not None:
            problems.append("message %d has content %r" % (wrong, q._entries()[wrong][0]))
        if (msgs, dropped) != model.states[n]:
            problems.append("the queue %r (dropped %d) is not the model after %d events %r" % (
                msgs, dropped, n, model.states[n]))
        if q.in_flight():
            problems.append("%d messages in flight after open" % q.in_flight())

        dead_before = q.dead()
        delivered = drain(q)
        dead_after = q.dead()
        ids = [mid for mid, msg in delivered]
        stats.delivered += len(ids)
        stats.dead += len(dead_after)
        # What the issue asks, counted.
        order = 0
        for i in range(1, len(ids)):
            if ids[i] <= ids[i - 1]:
                order += 1
        stats.order += order
        if order:
            problems.append("deliveries out of order: %r" % ids)
        phantom = [mid for mid, msg in delivered if mid > n or model.puts.get(mid) != msg]
        phantom += [mid for mid, msg, count in dead_after if mid > n or model.puts.get(mid) != msg]
        stats.phantom += len(phantom)
        if phantom:
            problems.append("ids never put (as of seq %d) or with other content: %r" % (n, phantom))
        redelivered = [mid for mid in ids if mid in model.acks and model.acks[mid] <= out.acked]
        redelivered += [mid for mid, msg, count in dead_before if mid in model.acks and model.acks[mid] <= out.acked]
        stats.redelivered += len(redelivered)
        if redelivered:
            problems.append("acknowledged acks undone, delivered again: %r" % redelivered)
        here = set(ids)
        for mid, msg, count in dead_after:
            here.add(mid)
        lost = [mid for mid in sorted(model.puts) if mid <= out.acked and mid not in here and
                not (mid in model.gone and model.gone[mid] <= n)]
        stats.lost += len(lost)
        if lost:
            problems.append("acknowledged puts lost: %r" % lost)
        # And exactly what the model says.
        deliver, dead = expected_drain(model, n)
        if ids != deliver:
            problems.append("delivered %r, the model %r" % (ids, deliver))
        if [(mid, count) for mid, msg, count in dead_after] != dead:
            problems.append("dead letters %r, the model %r" % (
                [(mid, count) for mid, msg, count in dead_after], dead))
        if problems:
            return "; ".join(problems)

        q.compact()
        if len(segment_files(DIR)) != 1:
            return "after compact(), segments %r" % segment_files(DIR)
        seq = q.seq
        q.close()
    except Exception as exc:
        problems.append("after open: %r" % (exc,))
        return "; ".join(problems)
    finally:
        if not q.closed:
            abandon(q)
    try:
        reboot(kind, geometry, image)
        q = open_queue(sync, PHASE_B)
    except Exception as exc:
        return "open after another reboot failed: %r" % (exc,)
    try:
        if q.seq != seq or len(q) or q.in_flight() or q.dead() != dead_after or len(q._log.segments) != 1:
            return "after another reboot: seq %d (expected %d), %d ready, %d in flight, dead %r, %d segments" % (
                q.seq, seq, len(q), q.in_flight(), q.dead(), len(q._log.segments))
        q.close()
    except Exception as exc:
        return "after another reboot: %r" % (exc,)
    finally:
        if not q.closed:
            abandon(q)
    return None


def uncut_total(name, sync):
    """Run the workload once without a cut; check it does what it is meant to; return
    the events it acknowledges (all of them), or an error message."""
    kind, geometry = name.split("-")
    flash = powercut.fresh(kind, geometry)
    out = run_workload(flash, sync)
    powercut.umount()
    model = out.info["model"]
    if out.error is not None:
        return "the uncut workload raised %r" % (out.error,)
    deads = [mid for mid in model.msgs if model.msgs[mid][2] == DEAD]
    if len(model.checkpoints) < 2 or model.dropped != 2 or len(deads) != 1:
        return "the workload made %d checkpoints, %d drops, %d dead letters" % (
            len(model.checkpoints), model.dropped, len(deads))
    return out.acked, model


def run_config(name, sync):
    stats = Stats()
    total = uncut_total(name, sync)
    if isinstance(total, str):
        print("FAIL %s %s: %s" % (name, sync, total))
        return 0, 1
    total, model = total
    checkpoints = len(model.checkpoints)
    model = None  # not kept through the sweep: it held 13 KB of the 192 KB board's heap
    passed, failed, start, end = powercut.sweep(name, sync, run_workload, verify, stats, total)
    print("%s %s: %d cut points x %d modes, acked puts lost %d, acked redelivered %d, "
          "order violations %d, phantom %d, failed %d "
          "(ops %d..%d; %d events, %d checkpoints; no directory yet %d, torn segment %d, "
          "several segments %d, inside a checkpoint %d, unacked events kept %d; "
          "drains delivered %d, dead letters %d)" % (
              name, sync, end - start, len(powercut.MODES), stats.lost, stats.redelivered,
              stats.order, stats.phantom, failed, start, end - 1, total, checkpoints,
              stats.nodir, stats.torn, stats.segments, stats.in_ckpt, stats.unacked,
              stats.delivered, stats.dead))
    powercut.report('miniqueue', name, sync, stats.lost, failed)
    return passed, failed


sys.exit(powercut.main(sys.argv, CONFIGS, run_config))
