# The ministate and miniqueue workloads for the crash-state explorer (see workloads.py).
import minishim
from ministate import StateManager, Mutator
from miniqueue import MiniQueue, IN_FLIGHT, READY, DEAD

from crashstate.workloads import Workload
from crashstate.contract import Durable, ContractQueue, check_view
from oracles import StateOracle


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
        # The model: the state the applies make (tests/core/oracles.py), and what the API
        # promises durable: each apply under sync="always"; under sync=N the journal's
        # policy (FORMAT.md 2.6), and every snapshot, taken after `every` records or by
        # create_snapshot(), syncs the journal first (4.2), as do sync() and close().
        self.model = StateOracle({"total": 0, "log": []})
        self.durable = Durable(sync)
        self.since_snapshot = 0

    def _snapshot(self):
        self.durable.sync()
        self.since_snapshot = 0

    def _commit(self, mutators):
        self.model.commit(mutators)
        self.durable.append(len(mutators))
        self.since_snapshot += len(mutators)
        if self.since_snapshot >= self.every:
            self._snapshot()

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
                self._commit([Add(n)])
                return sm
            return step

        def apply_many(sm):
            sm.apply_many([Add(10), Add(20)])
            self._commit([Add(10), Add(20)])
            return sm

        def snapshot(sm):
            sm.create_snapshot()
            self._snapshot()
            return sm

        def sync(sm):
            sm.sync()
            self.durable.sync()
            return sm

        def reopen(sm):
            sm.close()
            self.durable.sync()
            return self.open(self.root)

        def close(sm):
            sm.close()
            self.durable.sync()
            return sm
        return [lambda _: self.open(self.root), apply(1), apply(2), apply_many, apply(3), snapshot,
                apply(4), reopen, apply(5), sync, apply(6), close]

    def live_view(self, sm):
        n = len(self.model.records)
        self.seq_after.append(n)
        view = (n, minishim.dumps(self.model.state))
        check_view(self, len(self.seq_after) - 1, (sm.seq, minishim.dumps(sm.state)), view)
        return view

    def claimed(self, sm):
        return None if sm.closed else sm._log.store.durable_seq  # the brick's own count of what is synced

    def recovered_view(self, sm, root):
        return (sm.seq, minishim.dumps(sm.state))

    def cont(self, sm, view):
        sm.apply(Add(100))
        return (sm.seq, minishim.dumps(sm.state))


# ---------------------------------------------------------------- miniqueue

def queue_view(q, restarted=False):
    """The queue as a restart finds it: in-flight messages are ready again, counts kept
    (each message parsed, as get() delivers it; contract.ContractQueue.view() is the model's).
    restarted: q was just opened, so a message still in flight is shown so (and fails)."""
    msgs = []
    entries = q._entries()
    for mid in sorted(entries):
        body, deliveries, status = entries[mid]
        msgs.append((mid, minishim.loads(body), deliveries, READY if status == IN_FLIGHT and not restarted else status))
    return (tuple(msgs), q.dropped)


class QueueWorkload(Workload):
    """Each step calls the queue and the model (contract.ContractQueue: the queue oracle
    of tests/core/oracles.py over the journal's sync policy), which must agree on every
    id and message returned; the views and what is acknowledged are the model's."""

    brick = "miniqueue"
    max_bytes, compact_bytes = 160, 260

    def __init__(self, sync="always", on_full="reject", durability="puts"):
        self.sync, self.on_full, self.durability = sync, on_full, durability
        self.config = "put, get, ack, nack, dead, drops, checkpoints sync=%s on_full=%s durability=%s" % (
            sync, on_full, durability)
        self.seq_after = [0]
        self.model = ContractQueue(sync, durability)
        self.durable = self.model.store
        self.segment = None

    def initial_view(self):
        return ((), 0)

    def open(self, root):
        self.root = root
        return MiniQueue.open(root + "/q", max_bytes=self.max_bytes, on_full=self.on_full, max_deliveries=2,
                              sync=self.sync, compact_bytes=self.compact_bytes, durability=self.durability)

    def opened(self, _):
        q = self.open(self.root)
        self.segment = q._log.segments[-1].number
        return q

    def agree(self, what, got, expected):
        if got != expected:
            raise AssertionError("%s, step %d, %s: the queue returned %r, the model %r" % (
                self.name, len(self.seq_after), what, got, expected))

    def step(self, q, call, name, *args):
        """call() on the queue, the model's `name`(*args); their results must agree. A
        compaction the queue started on its own (compact_bytes: a new segment) is a
        checkpoint in the model at the end of the call (5.4: after the call's event)."""
        got = call()
        if name == "compacted":
            self.model.compacted()
        else:
            self.agree(name, got, self.model.call(name, *args))
        number = q._log.segments[-1].number
        for _ in range(number - self.segment - (1 if name == "compacted" else 0)):
            self.model.compacted()
        self.segment = number
        return q

    def put_step(self, messages, one=False):
        def step(q):
            call = (lambda: [q.put(messages[0])]) if one else (lambda: q.put_many(messages))
            return self.step(q, call, "put_many", messages, self.max_bytes, self.on_full)
        return step

    def get(self, q):
        return self.step(q, q.get, "get", 2)

    def first_in_flight(self, which):
        def step(q):
            mid = self.model.in_flight()[0]
            return self.step(q, lambda: getattr(q, which)(mid), which, mid)
        return step

    def compact(self, q):
        return self.step(q, q.compact, "compacted")

    def purge(self, q):
        got = q.purge_dead()
        self.agree("purge_dead", got, self.model.call("purge_dead"))
        return q

    def sync_step(self, q):
        q.sync()
        self.model.sync_all()
        return q

    def close(self, q):
        q.close()
        self.model.sync_all()
        return q

    def steps(self):
        put, get, sync, close = self.put_step, self.get, self.sync_step, self.close
        ack_first, nack_first = self.first_in_flight("ack"), self.first_in_flight("nack")
        first = [self.opened] + [put([{"m": i, "pad": "x" * 12}], one=True) for i in (1, 2, 3)]
        if self.on_full == "drop_oldest":
            first.append(put([{"big": "y" * 100}], one=True))  # drops the two oldest ready messages
        # sync() right after two gets: their events are in RAM (durability="puts"), and
        # the sync must write and sync them (5.2).
        return first + [get, ack_first, get, nack_first, get, nack_first, get, get,
                        sync, put([{"m": 4, "pad": "x" * 12}], one=True), put([{"m": "b1"}, {"m": "b2"}]),
                        self.compact, get, ack_first, self.purge, close]

    def live_view(self, q):
        self.seq_after.append(self.model.seq)
        view = self.model.view()
        if not q.closed:
            # The seq counts the events kept in RAM too: the next put's id (5.2).
            self.agree("seq", q.seq, self.model.seq)
            check_view(self, len(self.seq_after) - 1, queue_view(q), view)
        return view

    def claimed(self, q):
        # A get or an ack is durable with the next put, sync or close (FORMAT.md 5.2): the
        # store's count is of the events written, the model's too.
        return None if q.closed else q._log.store.durable_seq
    def recovered_view(self, q, root):
        return queue_view(q, restarted=True)

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

    max_bytes = compact_bytes = 100000

    def steps(self):
        put, get = self.put_step, self.get

        def compact_left_behind(q):
            # A crash after the checkpoint is synced and before the old segment is removed
            # leaves it for the next compaction: run this one without its removal.
            remove = q._log.compact
            q._log.compact = lambda upto_seq: 0
            try:
                return self.compact(q)
            finally:
                q._log.compact = remove
        two = put([{"m": "a"}, {"m": "b"}])
        return [self.opened, put([{"m": i} for i in range(34)]), get, two, compact_left_behind, get, two,
                self.compact, get, self.close]
