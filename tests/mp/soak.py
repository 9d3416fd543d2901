# Combined soak, exhaustive power-cut sweep and wear figures for the bricks used
# together (MicroPython unix port). The workload is tests/mp/soak_workload.py: one
# app with a StateManager, a MiniQueue outbox and a plain ministore journal in three
# directories of one filesystem, checked against reference models.
#
#   micropython -X heapsize=64M tests/mp/soak.py soak  FS[,FS..] [--seeds A:B | --seed S] [--ops N] [--cuts C] [--at K:MODE,..]
#   micropython -X heapsize=64M tests/mp/soak.py sweep FS[,FS..] [--ops N] [--seed S[,S..]]
#   micropython -X heapsize=64M tests/mp/soak.py wear  FS[,FS..] [--ops N] [--seed S]
# FS: lfs2-esp32, lfs2-rp2040, fat-esp32 (or fat-rp2040).
#
# soak: for each seed, a configuration (sync policies, snapshot and compaction
#   thresholds, queue limits) and a plan of C power cuts are drawn, each at a random
#   flash op in its part of the run, in a random mode of blockdev.MODES (sometimes
#   during the recovery that follows the previous cut). The workload runs N ops;
#   at each cut a powered-on copy of the flash is mounted with a fresh vfs object
#   (as after a reboot), the bricks are recovered and checked against the models,
#   and the workload goes on from what was recovered. After the last cut it runs to
#   its end uncut, closes everything, reboots, reopens exactly what was written,
#   drains the queue (FIFO, every message once) and reboots again to an empty queue.
#   --at replaces the drawn plan: K is the flash op (counted from the epoch's boot)
#   and MODE the mode of each cut, in order ("none": no cut). A failure prints the
#   --at that reproduces it.
# sweep: one short deterministic run (--seed, default SWEEP_SEED; --ops, default
#   SWEEP_OPS) that must reach every write path of the three bricks (SWEEP_COVERAGE),
#   cut at every program/erase op in every mode (tests/mp/powercut.py sweep()); each
#   cut is recovered, checked, continued, then finished as the soak finishes. Several
#   seeds (S,S,..) sweep several runs.
# wear: an uncut soak of N ops; the erases per block of the whole device (max, mean,
#   max/mean). LittleFS must stay within WEAR_RATIO_BOUND; FAT has no wear levelling
#   and is only reported.
# A failure right after a torn FAT sector rewrite (flash.torn_rewrite_lost > 0 at a
# cut of this seed) is a filesystem hazard, counted and printed apart (as powercut.sweep
# does; tests/mp/fat_torn_sector.py shows plain files lose data the same way).
# --core DIR imports the bricks from DIR instead of shared/ (a copy with a planted bug
# must make this fail). Prints one "RESULT {json}" line per (mode, FS) and ends with
# "N passed, N failed".
import gc
import random
import sys
import time

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
TOP = HERE + "/../.."
CORE = TOP + "/shared"
if "--core" in sys.argv:  # another copy of the bricks (for example one with a planted bug)
    at = sys.argv.index("--core")
    CORE = sys.argv[at + 1]
    del sys.argv[at:at + 2]
sys.path.insert(0, CORE)
sys.path.insert(0, HERE)
sys.path.append(TOP + "/tests/core")  # oracles.py, the models of the state and the queue

import blockdev  # noqa: E402
import minishim  # noqa: E402
import powercut  # noqa: E402
from powercut import MOUNT  # noqa: E402
import soak_workload  # noqa: E402
from soak_workload import App, Counts, Violation  # noqa: E402

ROOT = MOUNT + "/app"
MODES = blockdev.MODES
SOAK_OPS = 2000
SOAK_CUTS = 3
RECOVERY_CUT = 6          # one cut in RECOVERY_CUT lands in the recovery after the previous one
CUT_SPREAD = 64           # a cut lands 0..CUT_SPREAD-1 flash ops after the op it is armed at
WEAR_OPS = 20000
# max/mean erases per block that LittleFS must stay within, over WEAR_OPS ops or more.
# Measured when it was set (seed 0): esp32 1.71 at 5,000 ops, 2.09 at 20,000, 1.19 at
# 50,000; rp2040 2.94, 2.31 and 1.43. Too few ops measure the wrong thing: a directory's
# metadata pair takes ~100-140 erases before LittleFS moves it, whatever the mean, so at
# 5,000 ops the rp2040's ratio was that pair over a mean of 13-26 erases, and any saving
# of erases raised it. Measured 2026-12-03 (seeds 0-5), at 5,000 ops: rp2040 3.64-6.93,
# esp32 1.28-1.43 (seed 0 went 3.99 -> 4.03 with a change that made fewer erases in all,
# its hottest block unchanged at 104); at 20,000 ops: rp2040 1.76-3.65, esp32 1.13-1.49.
# FAT has no wear levelling: reported only.
WEAR_RATIO_BOUND = {"lfs2": 4.0}
# 60 ops of this seed reach every write path (SWEEP_COVERAGE); so do those of 54, 55, 61,
# 67, 76, 84, 103, 115 and 148 (the long run sweeps them all).
SWEEP_SEED = 141
SWEEP_OPS = 60
SWEEP_AFTER = 4           # ops run after each recovery in the sweep, before the finish
SWEEP_WEIGHTS = [
    ("apply", 10), ("apply_many", 5), ("snap", 4), ("sync", 2),
    ("put", 10), ("put_many", 5), ("get", 12), ("ack", 9), ("nack", 4), ("purge", 2), ("compact", 3),
    ("append", 6), ("append_many", 3),
    ("reopen_state", 2), ("reopen_queue", 2), ("reopen_journal", 2), ("restart", 1),
]
SWEEP_CONFIG = {
    "state_sync": 3, "snapshot_every": 6, "snapshot_bytes": None, "keep": 2,
    "queue_sync": 4, "max_bytes": [1200], "compact_bytes": 500, "max_deliveries": 2,
    "journal_sync": "always", "weights": SWEEP_WEIGHTS, "big": 0,
}
# What the sweep's uncut run must have done (Counts fields, at least).
SWEEP_COVERAGE = ("applies", "batches", "raising", "snaps", "auto_snaps", "snap_prunes", "state_compactions",
                  "puts", "put_batches", "gets", "acks", "nacks", "dead", "purges", "checkpoints",
                  "auto_checkpoints", "appends", "append_batches", "journal_closes", "reopens", "restarts")
PYTHON = "micropython -X heapsize=64M tests/mp/soak.py"
USAGE = """usage: soak.py soak  FS[,FS..] [--seeds A:B | --seed S] [--ops N] [--cuts C] [--at K:MODE,..|none]
       soak.py sweep FS[,FS..] [--seed S[,S..]] [--ops N]
       soak.py wear  FS[,FS..] [--seed S] [--ops N]
       (any of them: --core DIR)"""


def workload_seed(seed):
    """The workload's random stream is its own, so --at (or another cut count) replays the same ops."""
    return seed * 7919 + 2


def draw_plan(seed, ops, cuts):
    """[(arm op index or -1 for "during the recovery", flash ops after it, mode)] per cut."""
    random.seed(seed * 7919 + 1)
    plan = []
    for i in range(cuts):
        lo = i * ops // (cuts + 1)
        hi = (i + 1) * ops // (cuts + 1)
        if random.randrange(RECOVERY_CUT) == 0:
            plan.append((-1, random.randint(0, 7), random.choice(MODES)))
        else:
            plan.append((random.randint(lo, max(lo, hi - 1)), random.randrange(CUT_SPREAD), random.choice(MODES)))
    return plan


def at_text(cuts):
    return ",".join("%d:%s" % (k, mode) for k, mode in cuts) or "none"


def parse_at(text):
    if text == "none":
        return []
    out = []
    for item in text.split(","):
        k, mode = item.split(":")
        if mode not in MODES:
            raise SystemExit("unknown mode %r" % mode)
        out.append((int(k), mode))
    return out


def reboot(kind, geometry, flash):
    # A reboot copies the whole image: collect first, or the heap may have no free
    # run of BLOCKS x block size left for it.
    gc.collect()
    return powercut.reboot(kind, geometry, flash)


def finish(app, kind, geometry, flash):
    """The uncut end: close all, reboot, reopen exactly what was written, drain the queue,
    reboot again to an empty queue. Returns the last flash. Raises Violation."""
    app.close_all()
    flash = reboot(kind, geometry, flash)
    app.start(flash, False, True)
    app.drain()
    dead = [mid for mid, msg, count in app.q.dead()]
    if dead != app.qmodel.dead_ids():
        app.fail("queue dead letters", "dead %r, the model %r" % (dead, app.qmodel.dead_ids()))
    app.close_all()
    flash = reboot(kind, geometry, flash)
    app.start(flash, False, True)
    if len(app.q) or app.q.in_flight() or len(app.qmodel.ready()):
        app.fail("queue drain", "%d ready, %d in flight after the drain and a reboot" % (len(app.q), app.q.in_flight()))
    app.close_all()
    return flash


def leaked_locks():
    held = list(minishim._held)
    for key in held:
        del minishim._held[key]
    return held


# ---------------------------------------------------------------- soak

class Totals:
    def __init__(self):
        self.seeds = 0
        self.cuts = 0
        self.checks = 0
        self.passed = 0
        self.failed = 0
        self.acked_ops = 0
        self.acked_lost = 0
        self.hazards = 0
        self.ops = 0
        self.recovery_cuts = 0
        self.by_mode = {}
        self.kinds = {}
        self.counts = Counts()


def run_seed(name, seed, ops, cuts, at, totals):
    """One seed: the workload with its cuts, each followed by a checked recovery, then the
    uncut finish. Returns the last flash."""
    kind, geometry = name.split("-")
    random.seed(seed)
    cfg = soak_workload.draw_config()
    plan = draw_plan(seed, ops, cuts)
    if at is not None:
        plan = [(None, k, mode) for k, mode in at]
    random.seed(workload_seed(seed))
    powercut.umount()
    gc.collect()
    flash = powercut.fresh(kind, geometry)
    app = App(ROOT, cfg)
    done = []           # (k, mode) of each cut made
    where = []          # the op index of each cut
    torn_rewrites = []  # (cut number, bytes destroyed) of the cuts that tore a FAT sector rewrite
    problem = None
    epoch = 0
    while True:
        cut = plan[epoch] if epoch < len(plan) else None
        armed = False
        if cut is not None:
            arm_at, delta, mode = cut
            flash.mode = mode
            flash.after_cut = "lost"
            flash.reorder_seed = seed * 16 + epoch + 1
            if mode == "reorder":
                flash.cut_at = 1 << 30  # not yet: but hold the ops since each sync, as a write cache would
            if arm_at is None:
                flash.cut_at, armed = delta, True
            elif arm_at < 0:
                flash.cut_at, armed = flash.ops + delta, True
        error = None
        dead = False        # the power was off when the error came
        started = False
        try:
            app.start(flash, epoch > 0, epoch > 0)
            started = True
            if epoch > 0 and not flash.dead:
                totals.checks += 1
                totals.passed += 1
                totals.acked_ops += app.acked_total()
            while app.ops < ops and not flash.dead:
                if not armed and cut is not None and app.ops >= arm_at:
                    flash.cut_at, armed = flash.ops + delta, True
                app.step()
        except Exception as exc:
            error = exc
            dead = flash.dead
        held = []
        if error is not None or flash.dead:
            app.abandon()
            held = leaked_locks()
        if error is None:
            pass
        elif not dead:
            problem = str(error) if isinstance(error, Violation) else "unexpected %r with the power on" % (error,)
        elif flash.mode == "drop":
            # A dropped op fails silently and the program runs on, but what the filesystem
            # reads back after it is undefined, and a real board would be off: only the
            # recovery counts (as in powercut.sweep).
            if isinstance(error, Violation):
                app.forget_last_fail()
        elif isinstance(error, AssertionError) and "returned although op" in str(error):
            problem = "a call swallowed the I/O error of the power cut: %s" % (error,)
        elif not isinstance(error, OSError):
            # raise/torn/reorder: the cut op itself raises, and only an OSError may come out.
            problem = "%s at the power cut (an OSError is the only documented error)" % (
                error if isinstance(error, Violation) else repr(error))
        if problem is None and held:
            problem = "writer locks leaked: %r" % held
        if flash.dead:
            done.append((flash.cut_at, flash.mode))  # the reproduction needs the failing cut too
            where.append(app.ops)
            totals.cuts += 1
            totals.by_mode[flash.mode] = totals.by_mode.get(flash.mode, 0) + 1
            if not started:
                totals.recovery_cuts += 1
            if flash.torn_rewrite_lost:
                torn_rewrites.append((len(done), flash.torn_rewrite_lost))
        if problem is None and flash.dead:
            flash = reboot(kind, geometry, flash)
            epoch += 1
            continue
        break
    if problem is None:
        try:
            flash = finish(app, kind, geometry, flash)
            totals.checks += 1
            totals.passed += 1
            totals.acked_ops += app.acked_total()
        except Exception as exc:
            app.abandon()
            leaked_locks()
            problem = "at the uncut finish: %s" % (exc if isinstance(exc, Violation) else repr(exc))
    powercut.umount()
    totals.seeds += 1
    totals.ops += app.ops
    totals.counts.add(app.counts)
    if problem is None or not torn_rewrites:  # a hazard's losses are the filesystem's, counted apart
        totals.acked_lost += app.lost
        for kind_name in app.kinds:
            totals.kinds[kind_name] = totals.kinds.get(kind_name, 0) + app.kinds[kind_name]
    if problem is not None:
        repro = "%s soak %s --seed %d --ops %d --at %s" % (PYTHON, name, seed, ops, at_text(done))
        last = "cut %d (flash op %d, mode %s, workload op %d) or the recovery after it" % (
            len(done), done[-1][0], done[-1][1], where[-1]) if done else "before any cut"
        if torn_rewrites:
            totals.hazards += 1
            print("HAZARD %s seed %d %s: %s; then: %s" % (name, seed, last, ", ".join(
                "cut %d tore a FAT sector rewrite that destroyed %d bytes written before" % torn
                for torn in torn_rewrites), problem))
            print("  reproduce: %s" % repro)
        else:
            totals.checks += 1
            totals.failed += 1
            print("FAIL %s seed %d %s, op %d (last ops %s): %s" % (
                name, seed, last, app.ops, " ".join(app.trace), problem))
            print("  config: %s" % soak_workload.describe(cfg))
            print("  reproduce: %s" % repro)
    return flash


def soak(name, seeds, ops, cuts, at):
    totals = Totals()
    started = time.time()
    for seed in seeds:
        run_seed(name, seed, ops, cuts, at, totals)
        gc.collect()
    seconds = time.time() - started
    modes = " ".join("%s=%d" % (m, totals.by_mode.get(m, 0)) for m in MODES)
    print("soak %s: %d seeds x %d ops, %d cuts (%s; %d during a recovery), %d checks, %d failed, "
          "%d hazards, acked lost %d, %.1f s" % (
              name, totals.seeds, ops, totals.cuts, modes, totals.recovery_cuts, totals.checks,
              totals.failed, totals.hazards, totals.acked_lost, seconds))
    print("  did: %s" % totals.counts.summary())
    if totals.kinds:
        print("  violations by kind: %r" % totals.kinds)
    notes = "%d ops run; cuts by mode %s, %d during recovery; %s" % (
        totals.ops, modes, totals.recovery_cuts, totals.counts.summary())
    if totals.hazards:
        notes += "; %d seeds stopped by a torn FAT sector rewrite that destroyed earlier data (filesystem hazard)" % (
            totals.hazards)
    result("soak", name, "seeded random workload: %d ops/seed, %d power cuts/seed at random flash ops "
           "(modes %s, after_cut=lost), recover + check + continue, uncut finish with a drain; "
           "per-seed sync policies and thresholds" % (ops, cuts if at is None else len(at), "/".join(MODES)),
           totals.cuts, totals.seeds, totals.checks, totals.acked_ops, totals.acked_lost, totals.failed,
           totals.hazards, None, seconds, notes)
    return totals.passed, totals.failed


def result(suite, name, config, cut_points, seeds, checks, acked_ops, acked_lost, violations, hazards,
           wear, seconds, notes):
    print("RESULT " + minishim.dumps({
        "suite": suite, "brick": "all", "fs": name, "config": config, "cut_points": cut_points,
        "seeds": seeds, "checks": checks, "acked_ops": acked_ops, "acked_lost": acked_lost,
        "violations": violations, "hazards": hazards, "wear": wear, "seconds": seconds, "notes": notes}))


# ---------------------------------------------------------------- wear

def wear(name, seed, ops):
    totals = Totals()
    started = time.time()
    flash = run_seed(name, seed, ops, 0, None, totals)
    seconds = time.time() - started
    top, mean, ratio = flash.wear()
    figures = {"blocks": flash.blocks, "max": top, "mean": mean, "ratio": ratio}
    kind = name.split("-")[0]
    bound = WEAR_RATIO_BOUND.get(kind)
    failed = totals.failed
    note = "no wear levelling: reported only" if bound is None else "bound max/mean <= %.1f" % bound
    if bound is not None and ratio > bound:
        failed += 1
        print("FAIL %s wear: max/mean erases per block %.2f > %.1f" % (name, ratio, bound))
    used = len([n for n in flash.block_erases if n])
    hottest = sorted(range(flash.blocks), key=lambda b: -flash.block_erases[b])[:4]
    print("wear %s: %d ops (seed %d), %d erases over %d blocks (%d erased at least once): max %d, mean %.2f, "
          "max/mean %.2f; %s; %.1f s" % (name, totals.ops, seed, sum(flash.block_erases), flash.blocks, used,
                                         top, mean, ratio, note, seconds))
    print("  hottest blocks (erases): %s" % ", ".join("%d (%d)" % (b, flash.block_erases[b]) for b in hottest))
    result("wear", name, "uncut soak workload, %d ops, seed %d, %d blocks of %d bytes" % (
        ops, seed, flash.blocks, flash.block_size), 0, 1, 1, totals.acked_ops, totals.acked_lost, failed, 0,
        figures, seconds, "%d of %d blocks erased at least once; %s" % (used, flash.blocks, note))
    return 1 - min(failed, 1), failed


# ---------------------------------------------------------------- sweep

class SweepStats:
    """Counters powercut.sweep saves and restores around a hazard (int attributes only)."""

    def __init__(self):
        self.lost = 0

    def reset(self):
        self.__init__()


SWEEP = {"seed": SWEEP_SEED, "ops": SWEEP_OPS}


def sweep_workload(flash, sync):
    """The sweep's run: SWEEP ops with the fixed seed, then close everything. Never raises."""
    out = powercut.Outcome()
    random.seed(workload_seed(SWEEP["seed"]))
    app = App(ROOT, SWEEP_CONFIG)
    out.info["app"] = app
    error = None
    try:
        app.start(flash, False, False)
        while app.ops < SWEEP["ops"] and not flash.dead:
            app.step()
        if not flash.dead:
            app.close_all()
    except Exception as exc:
        error = exc
    left_open = app.sm is not None or app.q is not None or app.j is not None
    app.abandon()
    out.acked = app.acked_total()
    return powercut.finish(flash, out, error, left_open)


def sweep_verify(kind, geometry, flash, sync, out, stats):
    app = out.info["app"]
    try:
        image = reboot(kind, geometry, flash)
    except Exception as exc:
        return "mount failed: %r" % (exc,)
    try:
        app.start(image, True, True)
        for _ in range(SWEEP_AFTER):
            app.step()
        finish(app, kind, geometry, image)
    except Exception as exc:
        app.abandon()
        leaked_locks()
        stats.lost += app.lost
        return "%s (ops %s)" % (exc if isinstance(exc, Violation) else repr(exc), " ".join(app.trace))
    return None


def sweep_seed(name, seed, ops, totals):
    """The exhaustive sweep of one seed's run; adds its figures to `totals`."""
    kind, geometry = name.split("-")
    SWEEP["seed"], SWEEP["ops"] = seed, ops
    # The uncut run must reach every write path, or the sweep would not cut them.
    flash = powercut.fresh(kind, geometry)
    out = sweep_workload(flash, "mixed")
    powercut.umount()
    app = out.info["app"]
    missing = [field for field in SWEEP_COVERAGE if not getattr(app.counts, field)]
    if out.error is not None or missing:
        print("FAIL %s sweep seed %d: the uncut run raised %r or missed %r (did: %s)" % (
            name, seed, out.error, missing, app.counts.summary()))
        totals.failed += 1
        return
    print("sweep %s seed %d: %d ops, did: %s" % (name, seed, app.ops, app.counts.summary()))
    stats = SweepStats()
    passed, failed, start, end = powercut.sweep(name, "mixed", sweep_workload, sweep_verify, stats, out.acked)
    figures = powercut.SWEEP
    print("sweep %s seed %d: %d cut points (ops %d..%d) x %d modes, %d passed, %d failed, %d hazards, "
          "acked lost %d, %.1f s" % (name, seed, end - start, start, end - 1, len(MODES), passed, failed,
                                     figures.get("hazards", 0), stats.lost, time.time() - figures.get("started", 0)))
    for example in figures.get("hazard_examples", [])[:3]:
        print("HAZARD %s sweep seed %d %s" % (name, seed, example))
    if failed:
        print("  reproduce: %s sweep %s --seed %d --ops %d" % (PYTHON, name, seed, ops))
    totals.seeds += 1
    totals.passed += passed
    totals.failed += failed
    totals.cuts += figures.get("cut_points", 0)
    totals.checks += figures.get("checks", 0)
    totals.acked_ops += figures.get("acked_ops", 0)
    totals.acked_lost += stats.lost
    totals.hazards += figures.get("hazards", 0)
    totals.counts.add(app.counts)


def sweep(name, seeds, ops):
    totals = Totals()
    started = time.time()
    for seed in seeds:
        sweep_seed(name, seed, ops, totals)
        gc.collect()
    seconds = time.time() - started
    notes = "seeds %s, %d ops each, then %d more after each recovery and the uncut finish; the uncut runs did: %s" % (
        ",".join(str(seed) for seed in seeds), ops, SWEEP_AFTER, totals.counts.summary())
    if totals.hazards:
        notes += "; %d torn FAT sector rewrites destroyed earlier data (filesystem hazard, counted apart)" % (
            totals.hazards)
    result("powercut-sweep", name, "state sync=3 snapshot_every=6 keep=2; queue sync=4 compact_bytes=500 "
           "max_deliveries=2; journal sync=always; every op x modes %s" % "/".join(MODES),
           totals.cuts, totals.seeds, totals.checks, totals.acked_ops, totals.acked_lost, totals.failed,
           totals.hazards, None, seconds, notes)
    return totals.passed, totals.failed


# ---------------------------------------------------------------- command line

def main(argv):
    if len(argv) < 3 or argv[1] not in ("soak", "sweep", "wear"):
        raise SystemExit(USAGE)
    mode = argv[1]
    names = argv[2].split(",")
    options = {}
    i = 3
    while i < len(argv):
        if not argv[i].startswith("--") or i + 1 >= len(argv):
            raise SystemExit("bad argument %r" % argv[i])
        options[argv[i][2:]] = argv[i + 1]
        i += 2
    passed = failed = 0
    for name in names:
        if mode == "soak":
            if "seed" in options:
                seeds = [int(options["seed"])]
            else:
                first, last = options.get("seeds", "0:4").split(":")
                seeds = list(range(int(first), int(last)))
            at = parse_at(options["at"]) if "at" in options else None
            p, f = soak(name, seeds, int(options.get("ops", SOAK_OPS)), int(options.get("cuts", SOAK_CUTS)), at)
        elif mode == "wear":
            p, f = wear(name, int(options.get("seed", 0)), int(options.get("ops", WEAR_OPS)))
        else:
            seeds = [int(seed) for seed in options.get("seed", str(SWEEP_SEED)).split(",")]
            p, f = sweep(name, seeds, int(options.get("ops", SWEEP_OPS)))
        passed += p
        failed += f
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


sys.exit(main(sys.argv))
