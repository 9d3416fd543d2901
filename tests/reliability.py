# What the torture suites report, and how long they run.
#
# Every torture test (power-cut sweeps, the soak, SIGKILL sweeps, file damage,
# fuzzing) calls record() once per brick/filesystem/configuration it checked. When
# MINI_RELIABILITY_DIR is set (tools/reliability.py sets it), each call appends one
# JSON line to $MINI_RELIABILITY_DIR/results.jsonl; tools/reliability.py turns those
# lines into RELIABILITY.md. Without it, record() does nothing, so plain `./run test`
# leaves no files behind.
#
# MINI_TORTURE selects the size of every torture run:
#   "ci"   (default) the bounded run, the whole `.ci/run` stays under 30 minutes;
#   "long" the documented long run (tools/reliability.py --long).
import json
import os

FIELDS = (
    "suite",        # "powercut-sweep", "soak", "sigkill", "damage", "fuzz"
    "brick",        # "ministore", "minisnap", "ministate", "miniqueue", "all", "ministate+miniqueue"
    "fs",           # "lfs2-esp32", "lfs2-rp2040", "fat-esp32", "fat-rp2040", "posix" (CPython disk)
    "config",       # free text: sync policy, workload, damage kind ...
    "cut_points",   # power-cut points or kill points tried
    "seeds",        # seeds run (soak, fuzz); 0 where not seeded
    "checks",       # individual checks (cut point x mode, damaged file, generated input)
    "acked_ops",    # acknowledged operations that were checked after the cuts
    "acked_lost",   # acknowledged operations lost: must be 0
    "violations",   # invariant violations and unexpected exceptions: must be 0
    "inputs",       # inputs fuzzed or damaged files opened
    "hazards",      # cuts that hit a filesystem hazard, counted apart (torn FAT sector rewrites)
    "wear",         # {"blocks", "max", "mean", "ratio"} or None
    "seconds",      # wall time
    "notes",        # free text: e.g. "3 fallbacks to an older snapshot"
)


def scale():
    """ "ci" or "long" (from MINI_TORTURE)."""
    value = os.environ.get("MINI_TORTURE", "ci")
    if value not in ("ci", "long"):
        raise ValueError("MINI_TORTURE must be 'ci' or 'long', not %r" % value)
    return value


def pick(ci, long):
    """`ci` in the bounded run, `long` in the long one."""
    return long if scale() == "long" else ci


def record(**fields):
    """Append one result line (fields from FIELDS; missing ones are null)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError("unknown result fields: %s" % ", ".join(sorted(unknown)))
    where = os.environ.get("MINI_RELIABILITY_DIR")
    if not where:
        return
    line = dict((name, fields.get(name)) for name in FIELDS)
    line["scale"] = scale()
    os.makedirs(where, exist_ok=True)
    with open(os.path.join(where, "results.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")


class Tally:
    """What one torture group ran and checked, for record(): the one tally of the CPython
    suites (test_damage, test_fuzz); each adds the counts of its own kind."""

    failure = AssertionError  # what a failed check raises

    def __init__(self):
        self.inputs = 0      # inputs run (damaged files, hypothesis examples)
        self.checks = 0
        self.outcomes = {}   # outcome -> count, so the report shows what the inputs reached

    def check(self, ok, message, *args):
        """Count a check; raise `failure(message % args)` (formatted only then: records can be big)."""
        self.checks += 1
        if not ok:
            raise self.failure(message % args if args else message)

    def saw(self, outcome):
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def summary(self):
        return "; ".join("%s: %d" % (outcome, self.outcomes[outcome]) for outcome in sorted(self.outcomes))


def parse_result_lines(output):
    """The RESULT lines a MicroPython script printed ("RESULT {json}"), as dicts."""
    results = []
    for line in output.splitlines():
        if line.startswith("RESULT "):
            results.append(json.loads(line[len("RESULT "):]))
    return results
