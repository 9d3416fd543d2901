# What the API promises is durable, and what the bricks must hold, computed apart from
# the bricks' code: the floor of acknowledged steps comes from the documented sync
# policies (FORMAT.md 2.6, 4.2, 5.2), never from a brick's own count (durable_seq),
# so that a brick that skips a sync and says so honestly fails; the views come from
# the models in tests/core/oracles.py, not from the brick's RAM, so that a bug that
# changes RAM and journal the same way fails too.
from oracles import QueueOracle, IN_FLIGHT, READY


class Durable:
    """The records a journal (ministore, FORMAT.md 2.6) promises durable.

    sync="always" (or 1): every append that returned. sync=N: the file is synced once
    at least N records are unsynced, at sync(), close(), and at open() (2.5: it syncs
    what it found). `records` counts the records appended, `durable` those promised.
    """

    def __init__(self, sync, records=0):
        self.every = None if sync in ("always", 1) else sync
        self.records = records
        self.durable = records

    def append(self, n):
        """One batch of n records returned (a batch is kept whole or lost whole)."""
        self.records += n
        if self.every is None or self.records - self.durable >= self.every:
            self.durable = self.records

    def sync(self):
        """sync(), close(), open(), or a roll/snapshot/checkpoint that syncs first."""
        self.durable = self.records


def floor_step(seq_after, durable):
    """The last step whose records are all within the first `durable` records.

    seq_after[j]: the records (or events) after step j, as the model counts them."""
    return max(j for j in range(len(seq_after)) if seq_after[j] <= durable)


def check_claim(name, j, claimed, promised):
    """The brick's own count (durable_seq) must not be below what the API promises:
    it would say a record is not synced that the contract says is."""
    if claimed is not None and claimed < promised:
        raise AssertionError("%s, after step %d: the brick says seq %d is durable, the API promises %d" % (
            name, j, claimed, promised))


def check_view(workload, j, live, model):
    """The brick's own view after step j must be the model's (the oracle compares the model's)."""
    if live != model:
        raise AssertionError("%s, after step %d: the brick holds %r, the model %r" % (workload.name, j, live, model))


class ContractQueue(QueueOracle):
    """The queue oracle (FORMAT.md 5) with the journal's sync policy under it: which
    events a call writes to the store (a deferred get or ack stays in RAM until a put,
    nack, purge, checkpoint, sync or close writes it, 5.2) and which of those the
    store promises durable (Durable)."""

    def __init__(self, sync, durability):
        QueueOracle.__init__(self, defer=durability == "puts")
        self.store = Durable(sync)

    def _passed(self, before):
        """Events written to the store by the call that found `flushed` at `before`."""
        if self.flushed > before:
            self.store.append(self.flushed - before)

    def nack(self, mid):
        """Written and synced (under `sync`) with the events kept before it, whatever the
        durability (FORMAT.md 5.2 since 85f9b5d; oracles.QueueOracle still keeps it in RAM)."""
        self._written([{"nack": mid}])

    def call(self, name, *args):
        before = self.flushed
        out = getattr(self, name)(*args)
        self._passed(before)
        return out

    def sync_all(self):
        """sync() or close(): the deferred events are written, then the file synced."""
        self.flush()
        self.store.records = self.seq
        self.store.sync()

    def compacted(self):
        """A checkpoint (5.4): the deferred events lead it, synced at its ckpt_end."""
        self.checkpoint()
        self.store.records = self.seq
        self.store.sync()

    def view(self):
        """The queue as a restart finds it: in-flight messages ready again, counts kept."""
        msgs = []
        for mid in sorted(self.msgs):
            body, deliveries, status = self.msgs[mid][:3]
            msgs.append((mid, body, deliveries, READY if status == IN_FLIGHT else status))
        return (tuple(msgs), self.dropped)

    def in_flight(self):
        return [mid for mid in sorted(self.msgs) if self.msgs[mid][2] == IN_FLIGHT]
