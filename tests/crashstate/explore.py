# Runs a workload under the recorder, builds its crash states, and checks each one:
# the brick must open on it (its recovery is recorded too), show the view of a step
# between the last acknowledged one and the last attempted one, take one more step,
# and show that step after a clean reopen. A crash during that recovery is checked
# the same way, from the recovery's own trace (MINI_TORTURE=long: and a crash during
# the recovery of that recovery).
#
#   python3 tests/crashstate/explore.py [WORKLOAD ...] [--model ext4|weak] [--long]
# prints the figures and the first failures (with the crash point and what was kept).
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if __name__ == "__main__":  # run as a script: the same paths as conftest.py
    TOP = os.path.dirname(os.path.dirname(HERE))
    for sub in ("shared", "tests/core", "tests"):
        sys.path.insert(0, os.path.join(TOP, sub))

from crashstate.recorder import Recorder, scan  # noqa: E402
from crashstate.states import apply_ops, crash_states, Image  # noqa: E402
from crashstate import workloads  # noqa: E402

STATE_CHANGING = ("mkdir", "creat", "write", "unlink", "rename")


def record(factory, root):
    """Run the workload in `root` under the recorder: (recorder, views)."""
    wl = factory()
    wl.root = root
    wl.setup(root)
    rec = Recorder(root)
    views = [wl.initial_view()]
    obj = None
    with rec:
        for j, step in enumerate(wl.steps(), 1):
            rec.mark("begin", j)
            obj = step(obj)
            views.append(wl.live_view(obj))
            rec.mark("ack", wl.acked(obj, j))
    if obj is not None and not getattr(obj, "closed", True):
        wl.close(obj)
    # The recorder must have seen every change: replaying the whole trace gives the real tree.
    real = scan(root)
    replayed = apply_ops(rec.initial, rec.trace)
    if replayed != Image(frozenset(real[0]), real[1]):
        raise AssertionError("%s: the recorded trace does not rebuild the files it made" % wl.name)
    return rec, views


def marks_before(trace, k):
    """(acknowledged, attempted) step numbers when the crash hits after trace[:k]."""
    acked = attempted = 0
    for op in trace[:k]:
        if op[0] == "mark":
            if op[1] == "ack":
                acked = op[2]
            else:
                attempted = op[2]
    return acked, attempted


def materialize(image, where):
    if os.path.exists(where):
        shutil.rmtree(where)
    os.mkdir(where)
    for d in sorted(image.dirs, key=len):
        if d != ".":
            os.makedirs(os.path.join(where, d), exist_ok=True)
    for path, data in image.files.items():
        with open(os.path.join(where, path), "wb") as f:
            f.write(data)


class Result:
    def __init__(self, name, model):
        self.name = name
        self.model = model
        self.cut_points = 0
        self.states = 0            # crash states checked, the ones during a recovery included
        self.recovery_states = 0   # of which: crash states of a recovery
        self.acked_ops = 0
        self.acked_lost = 0
        self.violations = 0
        self.failures = []         # the first few, for the report
        self.seconds = 0.0

    def fail(self, message):
        self.violations += 1
        if len(self.failures) < 5:
            self.failures.append(message)

    def summary(self):
        return ("%s [%s]: %d crash points, %d states (%d during a recovery), %d acked ops checked, "
                "%d lost, %d violations, %.1f s" % (
                    self.name, self.model, self.cut_points, self.states, self.recovery_states,
                    self.acked_ops, self.acked_lost, self.violations, self.seconds))


def check(factory, image, views, acked, attempted, where, result, record_recovery):
    """Open the brick on `image`; return (initial, trace) of its recovery if it wrote and was recorded."""
    materialize(image, where)
    wl = factory()
    wl.root = where
    result.states += 1
    result.acked_ops += acked
    rec = Recorder(where) if record_recovery else None
    obj = None
    try:
        if rec is not None:
            with rec:
                obj = wl.open(where)
        else:
            obj = wl.open(where)
        view = wl.recovered_view(obj, where)
        if not wl.allowed(view, views, acked, attempted):
            older = [j for j in range(acked) if views[j] == view]
            if older:
                result.acked_lost += acked - older[-1]
                return "lost acknowledged steps %d..%d (found the view of step %d)" % (
                    older[-1] + 1, acked, older[-1]), None
            return "view matches no step in %d..%d: %r" % (acked, attempted, view), None
        expect = wl.cont(obj, view)
        wl.close(obj)
        obj = wl.open(where)
        again = wl.recovered_view(obj, where)
        if again != expect:
            return "after one more step and a reopen: %r, expected %r" % (again, expect), None
    except Exception as exc:
        return "%s: %s" % (type(exc).__name__, exc), None
    finally:
        if obj is not None:
            try:
                wl.close(obj)
            except Exception:
                pass
    if rec is not None and any(op[0] in STATE_CHANGING for op in rec.trace):
        return None, (rec.initial, rec.trace)
    return None, None


def explore(name, factory, model, long=False, recovery_budget=None, scratch=None, reorder_appends=None):
    """Check every crash state of the workload under `model`; return a Result.

    reorder_appends: None takes the workload's own setting (see Workload.reorder_appends).
    """
    if reorder_appends is None:
        reorder_appends = factory().reorder_appends
    started = time.time()
    result = Result(name, model)
    own = scratch is None
    scratch = scratch or tempfile.mkdtemp(prefix="mini-crashstate-", dir=_fast_tmp())
    try:
        rec, views = record(factory, os.path.join(scratch, "run"))
        result.cut_points = len(rec.trace) + 1
        found = crash_states(rec.initial, rec.trace, model, long, reorder_appends=reorder_appends)
        where = os.path.join(scratch, "state")
        recoveries = []
        for image, (k, why) in sorted(found.items(), key=lambda item: item[1][0]):
            acked, attempted = marks_before(rec.trace, k)
            error, recovery = check(factory, image, views, acked, attempted, where, result, True)
            if error:
                result.fail("crash after op %d of %d (%s; steps acked %d, attempted %d): %s\n    last ops: %s" % (
                    k, len(rec.trace), why, acked, attempted, error, describe(rec.trace, k)))
            elif recovery is not None:
                recoveries.append((recovery, acked, attempted, k, why))
        # A crash during a recovery: every crash state of the recovery's own trace.
        if recovery_budget == 0:
            recoveries = []
        elif recovery_budget is not None and len(recoveries) > recovery_budget:
            step = len(recoveries) / float(recovery_budget)
            recoveries = [recoveries[int(i * step)] for i in range(recovery_budget)]
        # With long, a crash during the recovery of that recovery too.
        depth = 2 if long else 1
        while recoveries and depth:
            depth -= 1
            deeper = []
            for (initial, trace), acked, attempted, k, why in recoveries:
                result.cut_points += len(trace) + 1
                for image, (k2, why2) in crash_states(initial, trace, model, long,
                                                      reorder_appends=reorder_appends).items():
                    result.recovery_states += 1
                    error, again = check(factory, image, views, acked, attempted, where, result, depth > 0)
                    if error:
                        result.fail("crash after op %d (%s), then during a recovery after op %d of %d (%s): %s\n"
                                    "    recovery ops: %s" % (k, why, k2, len(trace), why2, error, describe(trace, k2)))
                    elif again is not None:
                        deeper.append((again, acked, attempted, k, why))
            recoveries = deeper
    finally:
        if own:
            shutil.rmtree(scratch, ignore_errors=True)
    result.seconds = time.time() - started
    return result


def _fast_tmp():
    """A RAM filesystem if there is one: the real fsyncs cost time and prove nothing here
    (the crash states come from the model, not from the disk)."""
    where = "/dev/shm"
    if os.path.isdir(where) and os.access(where, os.W_OK):
        return where
    return None


def describe(trace, k, last=6):
    out = []
    for i in range(max(0, k - last), min(k, len(trace))):
        op = trace[i]
        if op[0] == "write":
            out.append("%d:write(ino %d @%d, %r)" % (i, op[1], op[2], op[3][:24]))
        else:
            out.append("%d:%s" % (i, op))
    return "; ".join(out)


def main(argv):
    long = "--long" in argv
    models = ["ext4", "weak"]
    if "--model" in argv:
        models = [argv[argv.index("--model") + 1]]
    names = [a for a in argv if not a.startswith("--") and a not in ("ext4", "weak")]
    bad = 0
    for name, factory in workloads.all_workloads():
        if names and name not in names:
            continue
        for model in models:
            try:
                result = explore(name, factory, model, long)
            except AssertionError as exc:  # the brick and the model disagreed while it ran
                print("%s [%s]: FAIL while recording: %s" % (name, model, exc))
                bad += 1
                continue
            print(result.summary())
            for failure in result.failures:
                print("  FAIL " + failure)
            bad += result.violations
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
