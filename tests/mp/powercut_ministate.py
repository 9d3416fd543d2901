# Power-cut test of ministate + minisnap on simulated flash (MicroPython unix port).
#   micropython -X heapsize=64M tests/mp/powercut_ministate.py [FS SYNC ...]
# FS is "lfs2-esp32", "lfs2-rp2040", "fat-esp32" or "fat-rp2040"; SYNC is
# "always" or an int (the batch policy). With no arguments every configuration
# runs. The sweep itself is tests/mp/powercut.py: the workload runs once uncut to
# count its program/erase ops, then the power is cut at every one of them, in the
# every mode of blockdev.py (raise, torn, drop, reorder) on NOR flash semantics,
# with nothing reaching the flash after the cut.
#
# The workload is a StateManager (keep=2, one automatic snapshot by count) taken
# through apply, apply_many, explicit snapshots (one of a state of ~6 KB, more
# than a 4096-byte block; the others ~1 KB), a close and a reopen. Snapshots
# prune older ones and compaction removes journal segments. Acknowledged: the
# records a call that returned with the power on made durable (all of them for
# create_snapshot and close; for apply under a batch policy, up to durable_seq).
#
# After each cut, a copy of the image is mounted with a fresh vfs object (as after
# a reboot) and:
#   1. read-only: every valid snapshot on it holds exactly the model state at its
#      seq, and every journal segment holds exactly the attempted records;
#   2. StateManager.open succeeds, and its (state, seq) is the model state after n
#      records, where n ends a call, n <= the records attempted and n >= the
#      records acknowledged (nothing acknowledged is lost);
#   3. it takes one more mutation and a snapshot, after which the directory holds
#      at most `keep` snapshots, all valid, and the journal is compacted back to the
#      oldest of them; after another reboot it reopens to that state and seq.
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
from minisnap import read_snapshot, SnapshotError  # noqa: E402
from minilog import segment_base  # noqa: E402
from ministate import StateManager, Mutator  # noqa: E402
from oracles import StateOracle, copy  # noqa: E402

DIR = MOUNT + "/data/state"  # does not exist on the fresh filesystem: open creates it
KEEP = 2
SNAPSHOT_EVERY = 6
CONFIGS = [
    ("lfs2-esp32", "always"), ("lfs2-esp32", 4),
    ("lfs2-rp2040", "always"), ("lfs2-rp2040", 4),
    ("fat-esp32", "always"), ("fat-esp32", 4),
]
INITIAL = {"count": 0, "items": {}}


class Inc(Mutator):
    def __init__(self, by):
        self.by = by

    def apply(self, state):
        state["count"] += self.by


class Put(Mutator):
    def __init__(self, key, value):
        self.key = key
        self.value = value

    def apply(self, state):
        state["items"][self.key] = self.value


MUTATORS = [Inc, Put]


def put(key, size, tag):
    """Put a value of `size` characters whose content names the step that wrote it."""
    tag = "%s%s." % (key, tag)
    return Put(key=key, value=(tag * (size // len(tag) + 1))[:size])


# The workload: ("open",), ("close",), ("snap",), ("apply", mutator) or ("many", [mutators]).
# The snapshot files are 1010, 6224 (two 4096-byte blocks), 1056 and 1270 bytes.
WORKLOAD = [
    ("open",),                                                   # creates the directory
    ("apply", put("a", 300, 1)),                                 # seq 1
    ("apply", Inc(by=1)),                                        # 2
    ("many", [put("b", 300, 3), Inc(by=2), put("c", 300, 5)]),   # 3..5
    ("snap",),                                                   # snap 1 at 5; segment 2
    ("apply", Inc(by=3)),                                        # 6
    ("many", [put("d", 2600, 7), put("e", 2600, 8)]),            # 7..8: the journal spans blocks
    ("snap",),                                                   # snap 2 at 8 (> 1 block); segment 3;
                                                                 #   compaction removes segment 1
    ("apply", put("a", 250, 9)),                                 # 9
    ("close",),
    ("open",),                                                   # reopen in the middle
    ("many", [put("d", 40, 10), put("e", 40, 11), Inc(by=4)]),   # 10..12
    ("snap",),                                                   # snap 3 at 12; prunes snap 1; segment 4;
                                                                 #   compaction removes segment 2
    ("apply", Inc(by=5)),                                        # 13
    ("many", [put("f", 200, 14), Inc(by=6), put("g", 200, 16)]), # 14..16
    ("apply", Inc(by=7)),                                        # 17
    ("apply", put("b", 100, 18)),                                # 18: automatic snap 4 at 18; prunes
                                                                 #   snap 2; segment 5; removes segment 3
    ("apply", Inc(by=8)),                                        # 19
    ("close",),
]
EXTRA = Inc(by=1000)  # the mutation applied after recovery


def build_model():
    """RECORDS (the records in seq order), BOUNDS (record counts at which a call ends),
    from the state oracle (tests/core/oracles.py); MUTATIONS (the workload's mutators in
    seq order), SNAPS (seqs snapshotted, in order) and AUTO (seqs at which an apply
    takes an automatic snapshot)."""
    oracle = StateOracle(INITIAL)
    mutations, snaps, auto = [], [], []
    since = 0
    last_snap = 0
    for step in WORKLOAD:
        op = step[0]
        done = len(oracle.records)
        if op == "open":
            since = done - last_snap
        elif op == "snap":
            snaps.append(done)
            last_snap, since = done, 0
        elif op in ("apply", "many"):
            mutators = [step[1]] if op == "apply" else step[1]
            oracle.commit(mutators)
            mutations.extend(mutators)
            since += len(mutators)
            if since >= SNAPSHOT_EVERY:
                snaps.append(len(oracle.records))
                auto.append(len(oracle.records))
                last_snap, since = len(oracle.records), 0
    return oracle, mutations, snaps, auto


def model_state(n):
    """The state after n records, as the oracle's commit() builds it: the workload's
    mutators applied in seq order to INITIAL. Built again at each call, holding the
    mutators' own strings: keeping a copy of every state (StateOracle's keep_states)
    took 38 KB of the 192 KB board heap, where create_snapshot() then found no 6 KB block."""
    state = copy(INITIAL)
    for i in range(n):
        MUTATIONS[i].apply(state)
    return state


_oracle, MUTATIONS, SNAPS, AUTO = build_model()
RECORDS, BOUNDS = _oracle.records, _oracle.bounds
assert model_state(len(RECORDS)) == _oracle.state
_oracle = None
# The workload does what the comments above say: 4 snapshots, the 4th automatic, the 2nd > 4 KB.
assert SNAPS == [5, 8, 12, 18] and AUTO == [18], (SNAPS, AUTO)
assert len(minishim.dumps(model_state(8))) > 6000 and len(minishim.dumps(model_state(5))) > 900


def open_manager(sync):
    return StateManager.open(DIR, initial=INITIAL, mutators=MUTATORS, snapshot_every=SNAPSHOT_EVERY,
                             keep=KEEP, sync=sync)


def abandon(sm):
    """Drop an open manager without writing anything, as a reboot would."""
    log, sm._log = sm._log, None
    if log is None:
        return
    if not log.store.closed:
        log.store._abandon()
    lock = getattr(log, "lock", None)
    if lock is not None:
        lock.release()


def check(sm, n, what):
    if sm.seq != n:
        raise AssertionError("%s: seq %d, expected %d" % (what, sm.seq, n))
    if sm.state != model_state(n):
        raise AssertionError("%s: the state differs from the model at seq %d" % (what, n))


def run_workload(flash, sync):
    """Run WORKLOAD on the filesystem mounted at MOUNT; never raises."""
    out = powercut.Outcome()
    sm = None
    n = 0  # records attempted so far
    error = None
    try:
        for step in WORKLOAD:
            op = step[0]
            if op == "open":
                sm, _ = call(flash, op, open_manager, sync)
                check(sm, n, op)
            elif op == "close":
                _, acked = call(flash, op, sm.close)
                if acked:
                    out.acked = n  # close syncs every record
                sm = None
            elif op == "snap":
                seq, acked = call(flash, op, sm.create_snapshot)
                if seq != n or sm.snapshot_seq != n:
                    raise AssertionError("create_snapshot returned %d (snapshot_seq %d), expected %d" % (
                        seq, sm.snapshot_seq, n))
                if acked:
                    out.acked = n  # a snapshot syncs the journal first
            else:
                count = 1 if op == "apply" else len(step[1])
                n += count
                out.attempted = n
                if op == "apply":
                    seq, acked = call(flash, op, sm.apply, step[1])
                else:
                    seq, acked = call(flash, op, sm.apply_many, step[1])
                if seq != n:
                    raise AssertionError("%s returned %d, expected %d" % (op, seq, n))
                check(sm, n, op)
                if n in AUTO and sm.snapshot_seq != n:
                    raise AssertionError("no automatic snapshot at seq %d" % n)
                if acked:  # every op of the call happened before the cut
                    durable = sm._log.store.durable_seq
                    if sync == "always":
                        if durable != seq:
                            raise AssertionError("durable_seq %d != %d" % (durable, seq))
                        out.acked = seq  # durable on return
                    else:
                        out.acked = durable
    except Exception as exc:
        error = exc
    left_open = sm is not None and not sm.closed
    if left_open:
        abandon(sm)
    return powercut.finish(flash, out, error, left_open)


class Stats:
    def __init__(self):
        self.lost = 0        # acknowledged records missing after a cut
        self.nodir = 0       # cuts before the state directory existed
        self.damaged = 0     # recoveries that found a damaged snapshot file
        self.fell_back = 0   # recoveries that skipped a damaged newest snapshot
        self.torn = 0        # recoveries that found a segment with a torn header or tail
        self.extra_files = 0  # recoveries that found more than `keep` snapshots or an uncompacted segment
        self.unacked = 0     # recoveries that kept records beyond the acknowledged ones
        self.by_snapshot = {}  # snapshot_seq recovered from -> count

    def reset(self):
        self.__init__()


def listing():
    """([(name, path)] of snapshot files, [(name, path)] of segments) in DIR, sorted."""
    snaps, segments = [], []
    for name in sorted(minishim.listdir(DIR)):
        path = DIR + "/" + name
        if name.startswith("snap-"):
            snaps.append((name, path))
        elif name.startswith("journal-"):
            segments.append((name, path))
    return snaps, segments


def inspect(stats):
    """Read-only look at DIR before anything opens it; return None or what is wrong."""
    if not exists(DIR):
        stats.nodir += 1
        return None
    snaps, segments = listing()
    valid = 0
    damaged = False
    for name, path in snaps:
        try:
            state, seq = read_snapshot(path)
        except (SnapshotError, ValueError):
            damaged = True
            continue
        valid += 1
        if seq not in SNAPS:
            return "%s: seq %d was never snapshotted" % (name, seq)
        if state != model_state(seq):
            return "%s: the state differs from the model at seq %d" % (name, seq)
    if damaged:
        stats.damaged += 1
    if valid > KEEP or len(segments) > KEEP + 1:
        stats.extra_files += 1
    torn = False
    for name, path in segments:
        reader = MiniStore.stream(path)
        for seq, rec in reader:
            if seq > len(RECORDS) or rec != RECORDS[seq - 1]:
                return "%s: seq %d holds %r, not attempted record %d" % (name, seq, rec, seq)
        if reader.torn is not None:
            torn = True
    if torn:
        stats.torn += 1
    return None


def check_directory(n):
    """After a snapshot at n: at most `keep` snapshots, all valid, the newest at n, and
    the journal compacted back to the oldest of them. Return None or what is wrong."""
    snaps, segments = listing()
    seqs = []
    for name, path in snaps:
        try:
            seqs.append(read_snapshot(path)[1])
        except (SnapshotError, ValueError) as exc:
            return "after a snapshot, %s is damaged: %s" % (name, exc)
    if not seqs or len(seqs) > KEEP or seqs[-1] != n:
        return "after a snapshot at %d: snapshots at %r" % (n, seqs)
    bases = [segment_base(path) for name, path in segments]
    oldest = min(seqs)
    if not bases or bases[-1] != n or bases[0] is None or bases[0] > oldest or (
            len(bases) > 1 and bases[1] <= oldest):
        return "after a snapshot at %d (oldest kept %d): segments start at %r" % (n, oldest, bases)
    return None


def verify(kind, geometry, flash, sync, out, stats):
    """Reboot on a copy of `flash` and check the state; return None or what is wrong."""
    try:
        image = reboot(kind, geometry, flash)
    except Exception as exc:
        return "mount failed: %r" % (exc,)
    try:
        problem = inspect(stats)
    except Exception as exc:
        problem = "reading the directory failed: %r" % (exc,)
    if problem is not None:
        return problem
    try:
        sm = open_manager(sync)
    except Exception as exc:
        return "open failed: %r" % (exc,)
    try:
        n = sm.seq
        if n > out.attempted:
            return "recovered seq %d, but only %d records were attempted" % (n, out.attempted)
        if n < out.acked:
            stats.lost += out.acked - n
            return "acknowledged records lost: acked %d, recovered seq %d" % (out.acked, n)
        if n not in BOUNDS:
            return "recovered seq %d: not the end of a call %r" % (n, BOUNDS)
        if sm.state != model_state(n):
            return "recovered seq %d but the state differs from the model at seq %d: %r" % (
                n, n, sm.state)
        if sm.snapshot_seq != 0 and sm.snapshot_seq not in SNAPS or sm.snapshot_seq > n:
            return "recovered from a snapshot at seq %d (seq %d)" % (sm.snapshot_seq, n)
        if sm.fell_back:
            stats.fell_back += 1
        stats.by_snapshot[sm.snapshot_seq] = stats.by_snapshot.get(sm.snapshot_seq, 0) + 1
        if n > out.acked:
            stats.unacked += 1
        want = model_state(n)
        EXTRA.apply(want)
        seq = sm.apply(EXTRA)
        if seq != n + 1 or sm.state != want:
            return "apply after recovery returned %d (expected %d), state %r" % (seq, n + 1, sm.state)
        seq = sm.create_snapshot()
        if seq != n + 1:
            return "create_snapshot after recovery returned %d, expected %d" % (seq, n + 1)
        sm.close()
        problem = check_directory(n + 1)
        if problem is not None:
            return problem
    except Exception as exc:
        return "after open: %r" % (exc,)
    finally:
        if not sm.closed:
            abandon(sm)
    try:
        reboot(kind, geometry, image)
        sm = open_manager(sync)
    except Exception as exc:
        return "open after another reboot failed: %r" % (exc,)
    try:
        if sm.seq != n + 1 or sm.state != want or sm.snapshot_seq != n + 1 or sm.fell_back:
            return "after another reboot: seq %d, snapshot_seq %d, fell_back %r, state %s" % (
                sm.seq, sm.snapshot_seq, sm.fell_back,
                "as expected" if sm.state == want else repr(sm.state))
        sm.close()
    except Exception as exc:
        return "after another reboot: %r" % (exc,)
    finally:
        if not sm.closed:
            abandon(sm)
    return None


def run_config(name, sync):
    stats = Stats()
    passed, failed, start, end = powercut.sweep(name, sync, run_workload, verify, stats, len(RECORDS))
    print("%s %s: %d cut points x %d modes, acked lost %d, violations %d "
          "(ops %d..%d; no directory yet %d, damaged snapshot %d, fell back %d, torn segment %d, "
          "extra files %d, unacked records kept %d; recovered from snapshot at %s)" % (
              name, sync, end - start, len(powercut.MODES), stats.lost, failed, start, end - 1,
              stats.nodir, stats.damaged, stats.fell_back, stats.torn, stats.extra_files,
              stats.unacked, sorted(stats.by_snapshot.items())))
    powercut.report('ministate', name, sync, stats.lost, failed)
    return passed, failed


sys.exit(powercut.main(sys.argv, CONFIGS, run_config))
