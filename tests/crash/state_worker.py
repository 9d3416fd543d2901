# Crash-test worker for ministate (CPython only). Run by tests/test_crash_ministate.py,
# which SIGKILLs it at random moments and then checks the state directory.
#
#   python state_worker.py DIRECTORY SYNC SEED SNAPSHOT_EVERY
#
# Opens the StateManager in DIRECTORY (recovering what the previous kill left) and
# applies mutations forever. The mutation with seq S is a pure function of
# (SEED, S) -- op(seed, seq) -- so the checker can compute the state after any
# prefix of them. The worker continues from the recovered seq.
#
# Lines on stdout (each one os.write, atomic on a pipe):
#   start                 before StateManager.open
#   open SEQ              open() returned; SEQ is the recovered seq
#   try FIRST LAST        about to apply (FIRST == LAST) or apply_many seqs FIRST..LAST
#   ack LAST              apply/apply_many returned: acknowledged (durable under "always")
#   snap-begin            create_snapshot() called (explicitly, or by apply when
#                         snapshot_every records have been applied)
#   snap-write            the snapshot file is being written (after the journal sync)
#   snap-roll             a new journal segment is being started
#   snap-compact          old journal segments are being removed
#   snap-end              create_snapshot() returned
import random
import sys

from harness import emit  # tests/crash/ is on sys.path: the script's directory, or put there by the test
from ministate import Mutator, StateManager

KEYS = 12                # Put keys: the state holds up to KEYS blobs of 2-6 KB
COUNTERS = 8
P = (1 << 61) - 1        # the chain is a hash of every mutation in order

INITIAL = {"n": 0, "chain": 0, "counters": {}, "blobs": {}}


class Add(Mutator):
    """Add n to a counter."""

    def __init__(self, key, n, seq):
        self.key = key
        self.n = n
        self.seq = seq

    def apply(self, state):
        counters = state["counters"]
        counters[self.key] = counters.get(self.key, 0) + self.n
        _step(state, self.seq, self.n)


class Put(Mutator):
    """Set a blob of a few KB (large enough that a snapshot takes a while to write)."""

    def __init__(self, key, data, seq):
        self.key = key
        self.data = data
        self.seq = seq

    def apply(self, state):
        state["blobs"][self.key] = self.data
        _step(state, self.seq, len(self.data))


def _step(state, seq, n):
    # Order-sensitive: a lost, repeated or reordered mutation changes the chain,
    # and state["n"] counts the mutations applied (it must equal the seq).
    state["n"] += 1
    state["chain"] = (state["chain"] * 1000003 + seq * 7919 + n) % P


MUTATORS = (Add, Put)

_pools = {}


def _pool(seed):
    pool = _pools.get(seed)
    if pool is None:
        pool = random.Random(seed).getrandbits(8 * 32768).to_bytes(32768, "little").hex()
        _pools[seed] = pool
    return pool


def op(seed, seq):
    """The mutation with sequence number `seq`: a pure function of (seed, seq)."""
    rng = random.Random(seed * 1000003 + seq)
    if rng.random() < 0.4:
        pool = _pool(seed)
        size = rng.randint(2048, 6144)
        start = rng.randrange(len(pool) - size)
        return Put(key="k%d" % rng.randrange(KEYS), data=pool[start:start + size], seq=seq)
    return Add(key="c%d" % rng.randrange(COUNTERS), n=rng.randint(-1000, 1000), seq=seq)


def _marked(name, func):
    def call(*args, **kwargs):
        emit(name)
        return func(*args, **kwargs)
    return call


def main(argv):
    directory, sync, seed, every = argv[1], argv[2], int(argv[3]), int(argv[4])
    if sync != "always":
        sync = int(sync)
    emit("start")
    sm = StateManager.open(directory, initial=INITIAL, mutators=MUTATORS,
                           snapshot_every=every, keep=2, sync=sync)
    emit("open %d" % sm.seq)

    # Markers around the steps of create_snapshot (FORMAT.md 4.2), also when apply()
    # calls it: instance attributes shadow the methods it looks up.
    create_snapshot = sm.create_snapshot

    def snapshot():
        emit("snap-begin")
        seq = create_snapshot()
        emit("snap-end")
        return seq
    sm.create_snapshot = snapshot
    sm._snaps.create = _marked("snap-write", sm._snaps.create)
    sm._log.roll = _marked("snap-roll", sm._log.roll)
    sm._log.compact = _marked("snap-compact", sm._log.compact)

    # Which call comes next is drawn from an RNG seeded with the recovered seq, so
    # each restart takes a different path through apply/apply_many/create_snapshot.
    ctl = random.Random(seed * 7919 + sm.seq)
    while True:
        pick = ctl.random()
        if pick < 0.08:
            sm.create_snapshot()
        elif pick < 0.30:
            first = sm.seq + 1
            last = first + ctl.randint(1, 4)
            emit("try %d %d" % (first, last))
            got = sm.apply_many([op(seed, s) for s in range(first, last + 1)])
            assert got == last, (got, last)
            emit("ack %d" % last)
        else:
            seq = sm.seq + 1
            emit("try %d %d" % (seq, seq))
            got = sm.apply(op(seed, seq))
            assert got == seq, (got, seq)
            emit("ack %d" % seq)


if __name__ == "__main__":
    main(sys.argv)
