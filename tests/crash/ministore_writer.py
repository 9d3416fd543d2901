# Crash-test writer for ministore (CPython only). Run by tests/test_crash_ministore.py,
# which SIGKILLs it at random moments and then checks the journal.
#
#   python ministore_writer.py JOURNAL SYNC SEED
#
# SYNC is "always" or an int N (MiniStore.open(sync=N)). The writer opens JOURNAL
# (open() recovers a torn tail left by the previous kill) and appends forever: single
# append() calls and append_many() batches of 1..20 records. After each call RETURNS
# it writes one line "<seq>\n" to stdout (a pipe): the last acknowledged seq.
#
# Every record is a pure function of (seed, seq) -- see make_record() -- so the
# checker can verify any record it reads back without being told what was written.
# Which call is made next (single or batch, batch size) is drawn from a separate RNG
# seeded with (seed, seq at open), so each restart takes a different path.
import os
import random
import sys

BIG_RATE = 0.3  # share of records that carry a large blob

# Text alphabets. Both have ASCII and the JSON escapes (quote, backslash, newline,
# tab, a control char). _ALPHABET adds 2-, 3- and 4-byte UTF-8 (no lone surrogates:
# JSON in UTF-8 cannot carry those); _LATIN only Latin-1 letters, for large records
# (see make_record).
_LATIN = ("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789"
          "\"\\\n\t\x01/{}[],:"
          "\u00e9\u00f6\u00df\u00a0\u00c5\u00ff")
_ALPHABET = (_LATIN +
             "\u0416\u03a9\u20ac\u2713\u2028\u65e5\u672c\u8a9e\ufffd"
             "\U0001F600\U0001F680\U00010348")


def _text(rng, alphabet, lo, hi):
    return "".join(rng.choices(alphabet, k=rng.randint(lo, hi)))


def _float(rng):
    pick = rng.random()
    if pick < 0.2:
        return rng.choice([0.0, -0.0, 1.0, 0.1, 1 / 3, 5e-324, 1.7976931348623157e308, -2.5e-308])
    if pick < 0.6:
        return rng.uniform(-1e6, 1e6)
    return rng.random() * 10.0 ** rng.randint(-300, 300) * rng.choice([1, -1])


def _value(rng, alphabet, depth):
    pick = rng.random()
    if depth >= 4 or pick < 0.25:
        return _text(rng, alphabet, 0, 12)
    if pick < 0.40:
        return _float(rng)
    if pick < 0.55:
        return rng.randint(-2 ** 70, 2 ** 70)
    if pick < 0.62:
        return rng.choice([None, True, False])
    if pick < 0.80:
        return [_value(rng, alphabet, depth + 1) for _ in range(rng.randint(0, 4))]
    return {_text(rng, alphabet, 0, 6): _value(rng, alphabet, depth + 1)
            for _ in range(rng.randint(0, 4))}


_pools = {}


def _pool(seed):
    """Strings derived from the seed that large records are slices of, so that a
    large record costs little CPU to derive: two 128 K-character hex strings and
    64 K characters of Latin-1 text."""
    pool = _pools.get(seed)
    if pool is None:
        rng = random.Random(seed)
        pool = [rng.getrandbits(8 * 65536).to_bytes(65536, "little").hex() for _ in range(2)]
        pool.append("".join(rng.choices(_LATIN, k=8192)) * 8)
        _pools[seed] = pool
    return pool


def _blob(rng, seed):
    """A random slice, 1 K to 16 K characters, of a pool string."""
    text = rng.choice(_pool(seed))
    size = rng.randint(1024, 16 * 1024)
    start = rng.randrange(len(text) - size)
    return text[start:start + size]


def make_record(seed, seq):
    """The record with sequence number `seq`: a pure function of (seed, seq)."""
    rng = random.Random(seed * 1_000_003 + seq)
    big = rng.random() < BIG_RATE
    # A SIGKILL tears a record only if it lands while the kernel copies a write()
    # (it stops between page-cache folios); most of the writer's time is spent
    # encoding in Python. Large records raise the share of time spent in write().
    # They use Latin-1 text only: one 4-byte character makes CPython encode the
    # whole line in UCS-4, several times slower.
    alphabet = _LATIN if big else _ALPHABET
    rec = {
        "seq": seq,
        "name": _text(rng, alphabet, 0, 24),
        "x": _float(rng),
        "n": rng.randint(-2 ** 63, 2 ** 63),
        "ok": rng.random() < 0.5,
        "none": None,
        "nested": {"d%d" % i: _value(rng, alphabet, 1) for i in range(rng.randint(0, 3))},
        "list": [_value(rng, alphabet, 1) for _ in range(rng.randint(0, 4))],
    }
    if big:
        rec["blob"] = _blob(rng, seed)
    return rec


def main(argv):
    path, sync, seed = argv[1], argv[2], int(argv[3])
    if sync != "always":
        sync = int(sync)
    from ministore import MiniStore

    store = MiniStore.open(path, sync=sync)
    ctl = random.Random(seed * 7919 + store.seq)
    out = sys.stdout.fileno()
    while True:
        if ctl.random() < 0.4:
            store.append(make_record(seed, store.seq + 1))
        else:
            first = store.seq + 1
            count = ctl.randint(1, 20)
            store.append_many([make_record(seed, first + i) for i in range(count)])
        # What "acknowledged" means: with sync="always" every record is durable
        # when append()/append_many() returns, so store.seq is acknowledged. With
        # sync=N the store fsyncs only every N records, so only records up to
        # store.durable_seq are promised to survive a crash: report that instead.
        # (A SIGKILL keeps the page cache, so the checker usually finds more.)
        acked = store.seq if sync == "always" else store.durable_seq
        # One small os.write to a pipe is atomic: the line arrives whole or not at all.
        os.write(out, b"%d\n" % acked)


if __name__ == "__main__":
    main(sys.argv)
