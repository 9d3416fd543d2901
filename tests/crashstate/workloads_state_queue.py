# The ministate and miniqueue workloads for the crash-state explorer (see workloads.py).
import minishim
from ministate import StateManager, Mutator
from miniqueue import MiniQueue, IN_FLIGHT, READY, DEAD

from crashstate.workloads import Workload


# ---------------------------------------------------------------- ministate

class Add(Mutator):
    def __init__(self, n):
        self.n = n

    def apply(self, state):
        state["total"] += self.n
        state["log"].append(self.n)


class StateWorkload(Workload):
    brick = "ministate"

    def __init__(self, sync="always", keep=1, every=3):
        self.sync, self.keep, self.every = sync, keep, every
        self.config = "applies, snapshots, compaction sync=%s keep=%d snapshot_every=%d" % (sync, keep, every)
        self.seq_after = [0]

    def initial_view(self):
        return (0, '{"total":0,"log":[]}')

    def open(self, root):
        self.root = root
        return StateManager.open(root + "/state", initial={"total": 0, "log": []}, mutators=[Add],
                                 snapshot_every=self.every, keep=self.keep, sync=self.sync)

    def steps(self):
        def apply(n):
            def step(sm):
                sm.apply(Add(n))
                return sm
            return step

        def apply_many(sm):
            sm.apply_many([Add(10), Add(20)])
            return sm

        def snapshot(sm):
            sm.create_snapshot()
            return sm

        def sync(sm):
            sm.sync()
            self.floor = len(self.seq_after)
            return sm

        def reopen(sm):
            sm.close()
            return self.open(self.root)

        def close(sm):
            sm.close()
            return sm
        return [lambda _: self.open(self.root), apply(1), apply(2), apply_many, apply(3), snapshot,
                apply(4), reopen, apply(5), sync, apply(6), close]

    def live_view(self, sm):
        self.seq_after.append(sm.seq)
        return (sm.seq, minishim.dumps(sm.state))

    def acked(self, sm, j):
        if self.sync == "always" or sm.closed:
            return j
        return self.by_durable_seq(j, sm._log.store.durable_seq)  # the brick's own count of what is synced

    def recovered_view(self, sm, root):
        return (sm.seq, minishim.dumps(sm.state))

    def cont(self, sm, view):
        sm.apply(Add(100))
        return (sm.seq, minishim.dumps(sm.state))


# ---------------------------------------------------------------- miniqueue

def queue_view(q):
    """The queue as a restart finds it: in-flight messages are ready again, counts kept."""
    msgs = []
    entries = q._entries()
    for mid in sorted(entries):
        body, deliveries, status = entries[mid]
        msgs.append((mid, body, deliveries, READY if status == IN_FLIGHT else status))
    return (tuple(msgs), q.dropped)


class QueueWorkload(Workload):
    brick = "miniqueue"

    def __init__(self, sync="always", on_full="reject", durability="puts"):
        self.sync, self.on_full, self.durability = sync, on_full, durability
        self.config = "put, get, ack, nack, dead, drops, checkpoints sync=%s on_full=%s durability=%s" % (
            sync, on_full, durability)
        self.seq_after = [0]

    def initial_view(self):
        return ((), 0)

    def open(self, root):
        self.root = root
        return MiniQueue.open(root + "/q", max_bytes=160, on_full=self.on_full, max_deliveries=2,
                              sync=self.sync, compact_bytes=260, durability=self.durability)

    def steps(self):
        def put(i):
            def step(q):
                q.put({"m": i, "pad": "x" * 12})
                return q
            return step

        def get(q):
            q.get()
            return q

        def ack_first(q):
            entries = q._entries()
            q.ack(min(mid for mid in entries if entries[mid][2] == IN_FLIGHT))
            return q

        def nack_first(q):
            entries = q._entries()
            q.nack(min(mid for mid in entries if entries[mid][2] == IN_FLIGHT))
            return q

        def put_many(q):
            q.put_many([{"m": "b1"}, {"m": "b2"}])
            return q

        def compact(q):
            q.compact()
            return q

        def purge(q):
            q.purge_dead()
            return q

        def sync(q):
            q.sync()
            self.floor = len(self.seq_after)
            return q

        def close(q):
            q.close()
            return q
        def put_big(q):
            q.put({"big": "y" * 100})  # drops the two oldest ready messages
            return q
        first = [lambda _: self.open(self.root), put(1), put(2), put(3)]
        if self.on_full == "drop_oldest":
            first.append(put_big)
        return first + [get, ack_first, get, nack_first, get, nack_first, get, get, put(4), sync, put_many, compact,
                        get, ack_first, purge, close]

    def live_view(self, q):
        self.seq_after.append(q.seq)
        return queue_view(q)

    def acked(self, q, j):
        # Every step is acknowledged when it returns only if every event is synced; by
        # default a get or an ack is durable with the next put, sync or close (FORMAT.md 5.2).
        if (self.sync == "always" and self.durability == "all") or q.closed:
            return j
        return self.by_durable_seq(j, q._log.store.durable_seq)

    def recovered_view(self, q, root):
        return queue_view(q)

    def allowed(self, view, views, acked, attempted):
        if view in views[acked:attempted + 1]:
            return True
        if attempted <= acked:
            return False
        # A get() passes over messages out of deliveries, one durable "dead" event each,
        # before its "get": a crash in between leaves some of them dead already.
        before, after = views[attempted - 1], views[attempted]
        status = dict((m[0], m[3]) for m in after[0])
        newly = [m[0] for m in before[0] if m[3] != DEAD and status.get(m[0]) == DEAD]
        for count in range(1, len(newly) + 1):
            dead = set(newly[:count])
            middle = (tuple(m[:3] + (DEAD,) if m[0] in dead else m for m in before[0]), before[1])
            if view == middle:
                return True
        return False

    def cont(self, q, view):
        q.purge_dead()
        while q.get() is not None:
            pass
        q.put({"after": 1})
        return queue_view(q)


class QueueCompactionWorkload(QueueWorkload):
    """A queue whose journal has what the default workload's never has: a put_many written
    after a deferred get (the get's line and the batch in one write), a checkpoint of two
    chunks (more than 32 messages), and a compaction that removes two old segments at once
    (the one a crash after an earlier checkpoint left, and its own)."""

    def __init__(self, durability="puts"):
        QueueWorkload.__init__(self, durability=durability)
        self.config = "put_many after a deferred get, a 2-chunk checkpoint, 2 segments removed durability=%s" % (
            durability)

    def open(self, root):
        self.root = root
        return MiniQueue.open(root + "/q", max_bytes=100000, max_deliveries=2, compact_bytes=100000,
                              durability=self.durability)

    def steps(self):
        def puts(q):
            q.put_many([{"m": i} for i in range(34)])
            return q

        def get(q):
            q.get()
            return q

        def put_two(q):
            q.put_many([{"m": "a"}, {"m": "b"}])
            return q

        def compact_left_behind(q):
            # A crash after the checkpoint is synced and before the old segment is removed
            # leaves it for the next compaction: run this one without its removal.
            remove = q._log.compact
            q._log.compact = lambda upto_seq: 0
            try:
                q.compact()
            finally:
                q._log.compact = remove
            return q

        def compact(q):
            q.compact()
            return q

        def close(q):
            q.close()
            return q
        return [lambda _: self.open(self.root), puts, get, put_two, compact_left_behind, get, put_two, compact,
                get, close]
