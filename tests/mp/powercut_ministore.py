# Power-cut test of ministore on simulated flash (MicroPython unix port).
#   micropython -X heapsize=64M tests/mp/powercut_ministore.py [FS SYNC ...]
# FS is "lfs2-esp32", "lfs2-rp2040", "fat-esp32" or "fat-rp2040"; SYNC is
# "always" or an int (the batch policy). With no arguments every configuration
# runs. For one configuration:
#   1. The append workload runs once without a cut to count its program/erase
#      ops: they are ops start..N-1 (start = the count after mkfs and mount).
#   2. For every k in range(start, N) and every mode (tests/mp/blockdev.py MODES),
#      a fresh filesystem runs the workload with the power cut at op k. The
#      acknowledged records are those whose append returned before the cut (for
#      the batch policy: durable_seq, the records a completed sync covers).
#   3. A copy of the image is mounted with a fresh vfs object (as after a
#      reboot) and the journal opened. The mount and the open must succeed, the
#      recovered records must be a prefix of the attempted ones that ends on a
#      batch boundary and holds every acknowledged record, a read-only replay
#      before the open must agree, and the recovered journal must take one more
#      record that reads back, also after another reboot.
# Each (configuration, cut point, mode) is one check; ends with "N passed, N failed".
# Steps 1 and 2, the reboot of step 3 and the bookkeeping of acknowledged calls are
# the sweep shared with the other power-cut tests, tests/mp/powercut.py.
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
TOP = HERE + "/../.."
sys.path.insert(0, TOP + "/shared")
sys.path.insert(0, HERE)

import powercut  # noqa: E402
from powercut import MOUNT, call, exists, reboot  # noqa: E402
from ministore import MiniStore  # noqa: E402

DIR = MOUNT + "/data/wal"  # does not exist on the fresh filesystem: open creates it
PATH = DIR + "/log.jsonl"
CONFIGS = [
    ("lfs2-esp32", "always"), ("lfs2-esp32", 4),
    ("lfs2-rp2040", "always"), ("lfs2-rp2040", 4),
    ("fat-esp32", "always"), ("fat-esp32", 4),
]


def record(i, size):
    """Record i, about `size` bytes of JSON, with content that identifies it."""
    tag = "r%d." % i
    return {"i": i, "fill": (tag * (size // len(tag) + 1))[:size]}


# The workload: ("open",), ("close",), ("append", size) or ("many", [sizes]).
WORKLOAD = [
    ("open",),
    ("append", 20),
    ("append", 5000),            # spans a block boundary
    ("many", [30, 40, 50]),
    ("append", 300),
    ("many", [10, 1500, 20, 700]),
    ("close",),
    ("open",),                   # reopen in the middle
    ("append", 5000),
    ("append", 60),
    ("many", [100, 5, 4200, 80, 9]),
    ("append", 15),
    ("close",),
]


def attempted_records():
    """Every record the workload appends, in order, and the batch boundaries (record counts)."""
    records = []
    bounds = [0]
    for step in WORKLOAD:
        if step[0] == "append":
            records.append(record(len(records) + 1, step[1]))
            bounds.append(len(records))
        elif step[0] == "many":
            for size in step[1]:
                records.append(record(len(records) + 1, size))
            bounds.append(len(records))
    return records, bounds


RECORDS, BOUNDS = attempted_records()
EXTRA = {"extra": "written after recovery"}


def run_workload(flash, sync):
    """Run WORKLOAD on the filesystem mounted at MOUNT; never raises."""
    out = powercut.Outcome()
    store = None
    n = 0  # records attempted so far
    error = None
    try:
        for step in WORKLOAD:
            op = step[0]
            if op == "open":
                store, _ = call(flash, op, MiniStore.open, PATH, sync)
                if store.seq != n:
                    raise AssertionError("open: seq %d, expected %d" % (store.seq, n))
            elif op == "close":
                _, acked = call(flash, op, store.close)
                if acked:
                    out.acked = store.durable_seq
                    if out.acked != n:
                        raise AssertionError("close: durable_seq %d != %d" % (out.acked, n))
                store = None
            else:
                count = 1 if op == "append" else len(step[1])
                n += count
                out.attempted = n
                if op == "append":
                    seq, acked = call(flash, op, store.append, RECORDS[n - 1])
                else:
                    seq, acked = call(flash, op, store.append_many, RECORDS[n - count:n])
                if seq != n:
                    raise AssertionError("%s returned %d, expected %d" % (op, seq, n))
                if acked:  # every op of the call happened before the cut
                    if sync == "always":
                        out.acked = seq  # durable on return
                        if store.durable_seq != seq:
                            raise AssertionError("durable_seq %d != %d" % (store.durable_seq, seq))
                    else:
                        out.acked = store.durable_seq
    except Exception as exc:
        error = exc
    left_open = store is not None and not store.closed
    if left_open:
        store._abandon()
    return powercut.finish(flash, out, error, left_open)


def describe(recs):
    return [r["i"] if isinstance(r, dict) and "i" in r else r for r in recs]


class Stats:
    def __init__(self):
        self.lost = 0       # acknowledged records missing after a cut
        self.torn = 0       # recoveries that found a torn tail after the header to pad
        self.empty = 0      # cuts that left the journal empty or with a torn header
        self.unacked = 0    # recoveries that kept records beyond the acknowledged ones
        self.nofile = 0     # cuts before the journal existed

    def reset(self):
        self.__init__()


def verify(kind, geometry, flash, sync, out, stats):
    """Reboot on a copy of `flash` and check the journal; return None or what is wrong."""
    try:
        image = reboot(kind, geometry, flash)
    except Exception as exc:
        return "mount failed: %r" % (exc,)
    before = None
    if exists(PATH):
        try:
            before = MiniStore.replay(PATH)
        except Exception as exc:
            return "read-only replay failed: %r" % (exc,)
    else:
        stats.nofile += 1
    got = []
    try:
        store = MiniStore.open(PATH, sync=sync, replay=lambda seq, rec: got.append(rec))
    except Exception as exc:
        return "open failed: %r" % (exc,)
    try:
        n = len(got)
        if got != RECORDS[:n]:
            return "recovered records are not a prefix of the attempted ones: %r" % (describe(got),)
        if n < out.acked:
            stats.lost += out.acked - n
            return "acknowledged records lost: acked %d, recovered %d" % (out.acked, n)
        if n not in BOUNDS:
            return "recovered %d records: not a batch boundary %r" % (n, BOUNDS)
        if store.seq != n:
            return "open: seq %d but %d records" % (store.seq, n)
        if before is not None:
            if list(before) != got:
                return "read-only replay %r differs from open's %r" % (describe(before), describe(got))
            if before.torn is not None:
                if before.torn.offset:
                    stats.torn += 1
                else:
                    stats.empty += 1
        if n > out.acked:
            stats.unacked += 1
        seq = store.append(EXTRA)
        if seq != n + 1:
            return "append after recovery returned %d, expected %d" % (seq, n + 1)
        store.close()
    except Exception as exc:
        return "after open: %r" % (exc,)
    finally:
        if not store.closed:
            store._abandon()
    # got == RECORDS[:n] (checked above): refer to RECORDS rather than keep the
    # recovered copies, so that a 128 KB heap holds the replays below (three ~20 KB
    # copies of the records did not fit beside a 5 KB line on the MCU build).
    want = RECORDS[:n] + [EXTRA]
    before = got = None
    for when in ("after recovery", "after another reboot"):
        try:
            if when != "after recovery":
                reboot(kind, geometry, image)
            back = MiniStore.replay(PATH)
        except Exception as exc:
            return "replay %s failed: %r" % (when, exc)
        if list(back) != want or back.torn is not None or back.seq != n + 1:
            return "replay %s: %r torn=%r seq=%r, expected %r" % (
                when, describe(back), back.torn, back.seq, describe(want))
    return None


def run_config(name, sync):
    stats = Stats()
    passed, failed, start, end = powercut.sweep(name, sync, run_workload, verify, stats, len(RECORDS))
    print("%s %s: %d cut points x %d modes, acked lost %d (ops %d..%d; %d failed; "
          "no journal yet %d, empty journal %d, torn tail padded %d, unacked records kept %d)" % (
              name, sync, end - start, len(powercut.MODES), stats.lost, start, end - 1, failed,
              stats.nofile, stats.empty, stats.torn, stats.unacked))
    powercut.report('ministore', name, sync, stats.lost, failed)
    return passed, failed


sys.exit(powercut.main(sys.argv, CONFIGS, run_config))
