# The reference models ("oracles") of what a queue directory and a state directory
# must hold: one copy of FORMAT.md sections 4 and 5, written apart from the bricks'
# code, for every test that checks a brick after damage, a power cut or a crash:
#   tests/test_damage.py (CPython: files cut at every byte),
#   tests/mp/soak_workload.py (the long combined workload, MicroPython),
#   tests/mp/powercut_miniqueue.py and powercut_ministate.py (the power-cut sweeps,
#   on the MicroPython unix port and on the MCU build).
# Each test keeps its own view of the oracle (what it compares, and how) and its
# own assertions. The oracle trusts its input: the events and mutations a test
# predicted itself, or read from a file before damaging it.
#
# Importable on CPython and MicroPython: no typing at runtime, no f-strings, no
# dataclasses; it needs only minishim (JSON that reads the same on both runtimes).
import minishim

# A message's status, as a checkpoint entry writes it (FORMAT.md 5).
READY, IN_FLIGHT, DEAD = 0, 1, 2
CKPT_CHUNK = 32  # checkpoint entries per write at most (FORMAT.md 5.4)
CKPT_BYTES = 4096  # ... and about this many bytes of messages (on files)


def copy(value):
    """A deep copy through JSON: the value as a brick gives it back after a restart."""
    return minishim.loads(minishim.dumps(value))


# ---------------------------------------------------------------- the queue (FORMAT.md 5)

def message_size(message):
    """Bytes a message counts against max_bytes: its stored JSON (FORMAT.md 5.3)."""
    return len(minishim.dumps(message).encode())


def queue_drops(live_bytes, ready, need, max_bytes, on_full):
    """The ids put_many drops to make room for `need` bytes, or None for QueueFull.

    ready: [(id, size)] of the ready messages, oldest first.
    """
    if need > max_bytes:
        return None
    drops = []
    if live_bytes + need > max_bytes:
        if on_full == "reject":
            return None
        freed = 0
        for mid, size in ready:
            if live_bytes - freed + need <= max_bytes:
                break
            drops.append(mid)
            freed += size
        if live_bytes - freed + need > max_bytes:
            return None
    return drops


class QueueOracle:
    """The queue as FORMAT.md section 5 defines it, event by event.

    msgs: id -> [message, deliveries, status, size]; seq: the seq of the last event;
    records[seq]: the event with that seq (None up to base_seq); bounds: the seqs at
    which a write (one atomic batch) ends; dropped: the drop counter; bytes: the size
    of the live messages. puts: id -> message of every put; acks and gone: id -> the
    seq of the event that acked it, or that removed it (ack, drop or purge);
    checkpoints: (first seq, last seq) of each checkpoint written.

    defer (durability="puts" on journal files, FORMAT.md 5.2): a get, an ack, or a dead
    letter a get makes is kept in RAM (its seq is past `flushed`) until a put, nack, purge, checkpoint,
    flush() (sync or close) or `unsynced_events` of them write it; an ack drops its get
    while that is still in RAM, alone in its batch, and the seqs after it move down.

    complete is False while the history is not whole: a journal that starts after
    seq 0 holds no queue until its first complete checkpoint (5.1); events before
    that change nothing here.
    """

    def __init__(self, base_seq=0, defer=False, unsynced_events=32):
        self.base_seq = base_seq
        self.seq = base_seq
        self.defer = defer
        self.unsynced_events = unsynced_events
        self.flushed = base_seq
        self.msgs = {}
        self.bytes = 0
        self.dropped = 0
        self.records = [None] * (base_seq + 1)
        self.bounds = [base_seq]
        self.puts = {}
        self.acks = {}
        self.gone = {}
        self.checkpoints = []
        self.complete = base_seq == 0
        self._ckpt = None  # the entries of a checkpoint not complete yet

    # -- replay (FORMAT.md 5.1)

    def apply(self, event):
        """Apply one event, the next seq's."""
        self.seq += 1
        seq = self.seq
        self.records.append(event)
        for kind in event:
            arg = event[kind]
        if kind == "ckpt":
            if self._ckpt and arg[0] <= self._ckpt[-1][0]:
                self._ckpt = None  # not ascending: a checkpoint cut short, then another one
            self._ckpt = (self._ckpt or []) + [arg]
            return
        if kind == "ckpt_end":
            self._restate(self._ckpt or [], arg["dropped"])
            self._ckpt = None
            return
        self._ckpt = None
        if not self.complete:
            return
        if kind == "put":
            size = message_size(arg)
            self.msgs[seq] = [arg, 0, READY, size]
            self.bytes += size
            self.puts[seq] = arg
        elif kind == "get":
            entry = self.msgs[arg]
            entry[1] += 1
            entry[2] = IN_FLIGHT
        elif kind == "nack":
            self.msgs[arg][2] = READY
        elif kind == "dead":
            self.msgs[arg][2] = DEAD
        elif kind in ("ack", "drop", "purge"):
            self.bytes -= self.msgs.pop(arg)[3]
            self.gone[arg] = seq
            if kind == "ack":
                self.acks[arg] = seq
            elif kind == "drop":
                self.dropped += 1
        else:
            raise ValueError("unknown event %r" % (event,))

    def _restate(self, entries, dropped):
        """At a ckpt_end the queue becomes exactly its entries (the same queue, when
        the writer's checkpoint restated it as it was)."""
        old = self.msgs
        self.msgs = {}
        self.bytes = 0
        for mid, message, deliveries, status in entries:
            before = old.get(mid)
            size = before[3] if before is not None and before[0] is message else message_size(message)
            self.msgs[mid] = [message, deliveries, status, size]
            self.bytes += size
        self.dropped = dropped
        self.complete = True

    def write(self, events):
        """One write (an atomic batch) of `events`."""
        for event in events:
            self.apply(event)
        self.bounds.append(self.seq)

    def replayed(self, n):
        """A new oracle holding the first n events, as a reopen finds the queue."""
        other = QueueOracle(self.base_seq, self.defer, self.unsynced_events)
        for seq in range(self.base_seq + 1, n + 1):
            other.apply(self.records[seq])
        other.bounds = [b for b in self.bounds if b <= n]
        other.checkpoints = [c for c in self.checkpoints if c[1] <= n]
        other.reopen()
        return other

    def flush(self):
        """sync() or close(): every event so far is written."""
        self.flushed = self.seq

    def _deferred(self, events):
        self.write(events)
        if not self.defer or self.seq - self.flushed >= self.unsynced_events:
            self.flushed = self.seq

    def _written(self, events):
        self.write(events)
        self.flushed = self.seq

    def _drop_get(self, mid):
        """ack(mid) while the get that delivered it is in RAM, alone in its batch: that
        get is never written, and the events after it take one seq less."""
        for g in range(self.seq, self.flushed, -1):
            if self.records[g] == {"get": mid}:
                break
        else:
            return
        at = len(self.bounds) - 1
        while self.bounds[at] > g:
            at -= 1
        if self.bounds[at] != g or self.bounds[at - 1] != g - 1:
            return  # batched with dead letters: it stays
        del self.records[g]
        del self.bounds[at]
        for i in range(at, len(self.bounds)):
            self.bounds[i] -= 1
        for seqs in (self.acks, self.gone):
            for k in seqs:
                if seqs[k] > g:
                    seqs[k] -= 1
        self.seq -= 1
        self.msgs[mid][1] -= 1
        self._dropped_event(g, mid)

    def _dropped_event(self, g, mid):
        """For subclasses that keep something per seq: event g (mid's get) is gone."""

    # -- what the writer does (FORMAT.md 5.2 to 5.4)

    def ready(self):
        return [mid for mid in sorted(self.msgs) if self.msgs[mid][2] == READY]

    def dead_ids(self):
        return [mid for mid in sorted(self.msgs) if self.msgs[mid][2] == DEAD]

    def put_many(self, msgs, max_bytes, on_full):
        """The ids put_many returns, or None for QueueFull (nothing written)."""
        need = 0
        for m in msgs:
            need += message_size(m)
        ready = [(mid, self.msgs[mid][3]) for mid in self.ready()]
        drops = queue_drops(self.bytes, ready, need, max_bytes, on_full)
        if drops is None:
            return None
        first = self.seq + len(drops) + 1
        self._written([{"drop": mid} for mid in drops] + [{"put": m} for m in msgs])
        return list(range(first, first + len(msgs)))

    def get(self, max_deliveries):
        """(id, message) that get returns, or None; the dead letters it passes over are
        written first, in the same batch (max_deliveries None: no limit)."""
        events = []
        for mid in self.ready():
            entry = self.msgs[mid]
            if max_deliveries is not None and entry[1] >= max_deliveries:
                events.append({"dead": mid})
                continue
            self._deferred(events + [{"get": mid}])
            return mid, entry[0]
        if events:
            self._deferred(events)
        return None

    def ack(self, mid):
        if self.defer:
            self._drop_get(mid)
        self._deferred([{"ack": mid}])

    def nack(self, mid):
        self._written([{"nack": mid}])  # synced before nack() returns, with what was kept before it

    def dead_letter(self, mid):
        self._written([{"dead": mid}])  # synced before dead_letter() returns

    def purge_dead(self):
        ids = self.dead_ids()
        if ids:
            self._written([{"purge": mid} for mid in ids])
        return len(ids)

    def reopen(self):
        """A restart: every message in flight is ready again (5.1)."""
        self.flushed = self.seq
        for mid in self.msgs:
            if self.msgs[mid][2] == IN_FLIGHT:
                self.msgs[mid][2] = READY

    def checkpoint(self, limit=CKPT_BYTES):
        """The events of a compaction's checkpoint: the live messages in batches of at
        most CKPT_CHUNK that stop at about `limit` bytes of messages (each counted with
        64 bytes around it), then the end marker (5.4)."""
        self.flush()  # the events in RAM are written first (they lead the first batch, in the new segment)
        first = self.seq + 1
        mids = sorted(self.msgs)
        chunk = []
        size = 0
        for mid in mids:
            entry = self.msgs[mid]
            length = message_size(entry[0])
            if len(chunk) == CKPT_CHUNK or (chunk and size + length > limit):
                self.write(chunk)
                chunk = []
                size = 0
            chunk.append({"ckpt": [mid, entry[0], entry[1], entry[2]]})
            size += length + 64
        if chunk:
            self.write(chunk)
        self._written([{"ckpt_end": {"messages": len(mids), "dropped": self.dropped}}])
        self.checkpoints.append((first, self.seq))


# ---------------------------------------------------------------- the state (FORMAT.md 4)

class StateOracle:
    """A ministate directory's mutations and the state after each seq (FORMAT.md 4.1).

    records[i] is the record (Mutator.to_record()) with seq i+1; bounds the seqs at
    which a write (apply, or apply_many's batch) ends; state the state after the last
    one. With keep_states, states[n] is a copy of the state after n records;
    otherwise states_at() replays them from `initial` with rebuild(record) (the
    Mutator that a record stands for).
    """

    def __init__(self, initial, rebuild=None, keep_states=False):
        self.initial = copy(initial)
        self.rebuild = rebuild
        self.records = []
        self.bounds = [0]
        self.state = copy(initial)
        self.states = [copy(initial)] if keep_states else None

    def commit(self, mutators):
        """One write of `mutators` (an apply, or an apply_many's batch)."""
        for m in mutators:
            self.records.append(m.to_record())
            m.apply(self.state)
            if self.states is not None:
                self.states.append(copy(self.state))
        self.bounds.append(len(self.records))

    def states_at(self, seqs):
        """{seq: the state after `seq` records} for every seq in `seqs` (<= len(records))."""
        if self.states is not None:
            return dict((seq, copy(self.states[seq])) for seq in seqs)
        out = {}
        state = copy(self.initial)
        done = 0
        for seq in sorted(set(seqs)):
            while done < seq:
                self.rebuild(self.records[done]).apply(state)
                done += 1
            out[seq] = copy(state)
        return out

    def truncate(self, n):
        """Forget the records after seq n: what a recovery at seq n found."""
        if n == len(self.records):
            return
        self.state = self.states_at([n])[n]
        self.records = self.records[:n]
        self.bounds = [b for b in self.bounds if b <= n]
        if self.states is not None:
            self.states = self.states[:n + 1]
