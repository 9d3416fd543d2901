# Crash test for ministate (CPython only): run tests/crash/state_worker.py as a
# subprocess, SIGKILL it at a random moment -- often inside create_snapshot(): while
# the snapshot is written, the journal segment rolled, or old segments removed -- and
# check the directory it leaves behind:
#
# - StateManager.load() (read-only) recovers a state equal to the model state after
#   some prefix of the attempted mutations that holds every acknowledged one: its seq
#   is >= the last acked seq (nothing acknowledged is lost), <= the last attempted
#   one, never inside an apply_many batch (batches are atomic), and never below a
#   seq recovered before;
# - StateManager.open() succeeds and recovers the same state and seq.
#
# Then the worker is restarted on the same directory (it continues from the recovered
# seq), and so on, hundreds of times (5x as many with MINI_TORTURE=long).
import json
import os
import random
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CRASH = os.path.join(HERE, "crash")
import harness  # noqa: E402  (tests/crash is on sys.path: conftest.py)
import reliability  # noqa: E402
from state_worker import INITIAL, MUTATORS, op
from ministate import StateManager  # noqa: E402
from minisnap import SnapStore  # noqa: E402
from minilog import segment_files  # noqa: E402

pytestmark = harness.needs_sigkill()

WORKER = os.path.join(CRASH, "state_worker.py")
KILL_DELAY = (0.0, 0.060)   # seconds from the worker's first line ("start") to its SIGKILL
SNAP_MARKERS = {"snap-begin", "snap-write", "snap-roll", "snap-compact", "snap-end"}
INSIDE = ("snap-begin", "snap-write", "snap-roll", "snap-compact")  # create_snapshot() not returned


class Model:
    """The state after each prefix of the mutations op(seed, 1), op(seed, 2), ..."""

    def __init__(self, seed):
        self.seed = seed
        self.seq = 0
        self.state = json.loads(json.dumps(INITIAL))

    def at(self, seq):
        assert seq >= self.seq, "the model only moves forward"
        while self.seq < seq:
            self.seq += 1
            op(self.seed, self.seq).apply(self.state)
        return self.state


class Campaign:
    def __init__(self, tmp_path, sync, seed, every):
        self.directory = str(tmp_path / ("state-%s" % sync))
        self.stderr_path = str(tmp_path / ("state-worker-%s.stderr" % sync))
        self.sync = sync
        self.seed = seed
        self.every = every
        self.rng = random.Random(seed)
        self.model = Model(seed)
        self.recovered = 0        # seq recovered after the previous kill
        self.kills = 0
        self.acked = 0            # acknowledged mutations, over all runs
        self.max_acked = 0
        self.lost = 0
        self.phases = {}          # kills by the marker the worker wrote last
        self.inside = 0           # kills inside create_snapshot()
        self.during_open = 0      # kills before open() returned (during recovery)
        self.snapshots = 0        # snapshots begun
        self.skipped = 0          # recoveries that skipped a damaged (torn) newest snapshot
        self.max_files = (0, 0)   # most snapshot files, journal segments seen after a kill
        self.started = time.monotonic()

    def kill_once(self):
        delay = self.rng.uniform(*KILL_DELAY)
        lines = harness.run_one(WORKER, [self.directory, self.sync, self.seed, self.every],
                                self.stderr_path, delay)
        self.kills += 1
        self.check(lines)

    def check(self, lines):
        where = "kill %d, seed %d, %s" % (self.kills, self.seed, self.directory)
        opened = None
        acks = []
        tries = []
        for line in lines:
            words = line.split()
            if words[0] == "open":
                opened = int(words[1])
            elif words[0] == "ack":
                acks.append(int(words[1]))
            elif words[0] == "try":
                tries.append((int(words[1]), int(words[2])))
            elif words[0] == "snap-begin":
                self.snapshots += 1
        phase = harness.phase_at_kill(lines, SNAP_MARKERS | {"start", "open"})
        if phase == "open":
            phase = "apply"
        elif phase == "start":
            self.during_open += 1
            phase = "open"
        elif phase == "snap-end":
            phase = "apply"
        self.phases[phase] = self.phases.get(phase, 0) + 1
        if phase in INSIDE:
            self.inside += 1

        # The worker's own view: it recovered what the last check recovered, and acked
        # in order from there.
        if opened is not None:
            assert opened == self.recovered, "worker reopened at seq %d, the check saw %d (%s)" % (
                opened, self.recovered, where)
        previous = self.recovered
        for seq in acks:
            assert seq > previous, "acks out of order: %r (%s)" % (acks, where)
            previous = seq
        if acks:
            self.acked += acks[-1] - self.recovered  # mutations acknowledged in this run
        must_have = acks[-1] if acks else self.recovered
        may_have = tries[-1][1] if tries else self.recovered
        self.max_acked = max(self.max_acked, must_have)

        # 1. Read-only recovery.
        state, seq, snap_seq = StateManager.load(self.directory, INITIAL, MUTATORS)
        if seq < must_have:
            self.lost += must_have - seq
        assert seq >= must_have, "acknowledged seq %d lost: recovered seq %d (%s)" % (
            must_have, seq, where)
        assert seq <= may_have, "recovered seq %d was never attempted (last try %d, %s)" % (
            seq, may_have, where)
        for first, last in tries:
            assert not first <= seq < last, (
                "recovered seq %d is inside the atomic batch %d..%d (%s)" % (seq, first, last, where))
        assert 0 <= snap_seq <= seq
        expected = self.model.at(seq)
        assert state["n"] == seq, "state counts %d mutations at seq %d (%s)" % (state["n"], seq, where)
        assert state == expected, "state at seq %d differs from the model (%s)" % (seq, where)

        # 2. Writable recovery must succeed and agree.
        sm = StateManager.open(self.directory, INITIAL, MUTATORS, snapshot_every=self.every,
                               keep=2, sync=self.sync)
        try:
            assert sm.seq == seq, "open() recovered seq %d, load() %d (%s)" % (sm.seq, seq, where)
            assert sm.state == expected, "open() state differs from the model at seq %d (%s)" % (
                seq, where)
            assert sm.snapshot_seq == snap_seq
            if sm.skipped_snapshots:
                self.skipped += 1
        finally:
            sm.close()
        self.recovered = seq
        files = (len(SnapStore(self.directory).files()), len(segment_files(self.directory)))
        self.max_files = tuple(max(a, b) for a, b in zip(self.max_files, files))

    def summary(self):
        phases = ", ".join("%s=%d" % (k, self.phases[k]) for k in sorted(self.phases))
        return ("sync=%s snapshot_every=%d: kills=%d kills_inside_create_snapshot=%d "
                "kills_during_open=%d (by phase: %s) snapshots_begun=%d acked_ops=%d final_seq=%d "
                "torn_snapshots_skipped=%d max_files(snap,seg)=%s lost=%d (%.1fs)" % (
                    self.sync, self.every, self.kills, self.inside, self.during_open, phases,
                    self.snapshots, self.acked, self.recovered, self.skipped, self.max_files,
                    self.lost, time.monotonic() - self.started))


# (sync, snapshot_every, kills, seed). With sync=4 the journal is fsynced every 4
# records only, but a SIGKILL keeps what was written in the page cache: a process
# crash must not lose an acknowledged mutation either.
CAMPAIGNS = [("always", 10, reliability.pick(ci=220, long=1100), 20240607),
             (4, 6, reliability.pick(ci=60, long=300), 4242)]
MIN_KILLS = 200              # with sync="always"
MIN_INSIDE_SNAPSHOT = 50     # of those, inside create_snapshot()


def test_sigkill_during_snapshot_and_compaction_loses_nothing(tmp_path):
    started = time.monotonic()
    campaigns = []
    for sync, every, kills, seed in CAMPAIGNS:
        campaign = Campaign(tmp_path, sync, seed, every)
        for _ in range(kills):
            campaign.kill_once()
        print("\nministate crash test " + campaign.summary())
        campaigns.append(campaign)
    main = campaigns[0]
    print("ministate crash test total: kills=%d kills_inside_create_snapshot=%d acked_ops=%d "
          "lost=%d in %.1fs" % (sum(c.kills for c in campaigns), sum(c.inside for c in campaigns),
                                sum(c.acked for c in campaigns), sum(c.lost for c in campaigns),
                                time.monotonic() - started))
    # Each kill is checked (load and open against the model) before the next; a wrong
    # state fails the test at once, so the violations that reach this line are 0.
    phases = {}
    for c in campaigns:
        for phase in c.phases:
            phases[phase] = phases.get(phase, 0) + c.phases[phase]
    reliability.record(
        suite="sigkill", brick="ministate", fs="posix",
        config=", ".join("sync=%s snapshot_every=%d x%d" % (c.sync, c.every, c.kills) for c in campaigns),
        cut_points=sum(c.kills for c in campaigns), seeds=len(campaigns),
        checks=sum(c.kills for c in campaigns), acked_ops=sum(c.acked for c in campaigns),
        acked_lost=sum(c.lost for c in campaigns), violations=0,
        seconds=round(time.monotonic() - started, 2),
        notes="%d kills inside create_snapshot, %d during open, %d snapshots begun, "
              "%d recoveries skipped a torn snapshot; kills by phase: %s" % (
                  sum(c.inside for c in campaigns), sum(c.during_open for c in campaigns),
                  sum(c.snapshots for c in campaigns), sum(c.skipped for c in campaigns),
                  ", ".join("%s %d" % (k, phases[k]) for k in sorted(phases))))
    assert sum(c.lost for c in campaigns) == 0
    assert main.sync == "always" and main.kills >= MIN_KILLS
    assert main.inside >= MIN_INSIDE_SNAPSHOT, (
        "only %d of %d kills landed inside create_snapshot()" % (main.inside, main.kills))
