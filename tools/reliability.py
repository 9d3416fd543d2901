#!/usr/bin/env python3
"""Run the torture suites and write RELIABILITY.md from what they measured.

    ./run reliability            the bounded run (what CI runs inside ./run test), ~15 min
    ./run reliability --long     the long run (MINI_TORTURE=long: more seeds, kills, examples)

It runs pytest on the torture tests with MINI_RELIABILITY_DIR set; each of them
appends its figures there as JSON lines (tests/reliability.py). Then it writes the
report (default RELIABILITY.md at the top of the repo). It exits 1 if a test failed
or any acknowledged operation was lost or any invariant was violated, and still
writes the report so the failure is on record.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TORTURE_TESTS = [
    "tests/test_powercut_ministore.py",
    "tests/test_powercut_ministate.py",
    "tests/test_powercut_miniqueue.py",
    "tests/test_fat_torn_sector.py",
    "tests/test_soak.py",
    "tests/test_crash_ministore.py",
    "tests/test_crash_ministate.py",
    "tests/test_crash_miniqueue.py",
    "tests/test_crash_miniqueue_limits.py",
    "tests/test_damage.py",
    "tests/test_fuzz.py",
    "tests/test_crash_states.py",
    "tests/test_forward_torture.py",
    "tests/test_forward_board.py",
]

SUITES = [
    # (suite, title, what it does)
    ("powercut-sweep", "Power cut at every flash operation (MicroPython, NOR flash)",
     "A workload runs once to count its program/erase operations, then again with the power cut at "
     "each one, in each mode of tests/mp/blockdev.py: raise (nothing lands), torn (a prefix lands), "
     "drop (silently lost) and reorder (writes since the last sync barrier complete out of order). "
     "A copy of the flash is remounted as after a reboot and checked against a model."),
    ("soak", "Combined soak: ministate + miniqueue on one flash (MicroPython)",
     "A seeded random workload (apply, put, get, ack, nack, snapshots, compaction, reopen) with "
     "power cuts at random operations in random modes; after each cut the flash is remounted, "
     "recovered and checked against a model, and the workload goes on."),
    ("sigkill", "SIGKILL at random moments (CPython, real processes)",
     "A writer process is killed with SIGKILL, often in the middle of a write or a compaction; "
     "the files it leaves must open to every acknowledged operation."),
    ("damage", "Damaged files (CPython)",
     "Files truncated at every byte offset and journals with every bit flipped, one at a time; "
     "opening must recover as documented (FORMAT.md) or raise the documented error, and "
     "`mini verify` must see every change."),
    ("fuzz", "Fuzzing with hypothesis (CPython, and MicroPython for the cross-runtime corpus)",
     "Generated records and generated file damage against the writers, the readers and "
     "`mini verify`; only documented errors may come out, and data read back is never wrong."),
    ("crash-states", "Crash states a kernel can leave (CPython, recorded file operations)",
     "Each workload's file operations (create, write, fsync, fdatasync, rename, unlink, mkdir, directory "
     "fsyncs) are recorded (tests/crashstate), and every crash state that the persistence model allows "
     "is built: under ext4 data=ordered, a prefix of the journaled metadata and appends, overwrites "
     "lost or torn at a sector; under the weak POSIX minimum, unsynced writes lost or reordered, appends "
     "kept in part, as zeros or as garbage, new directory entries lost without a directory fsync, "
     "renames kept before their data. The brick must open on each state with every acknowledged step "
     "and nothing never written, take one more step and keep it across a reopen; a crash during that "
     "recovery is checked the same way. Unlike SIGKILL, these states see a missing sync."),
    ("forward", "Store and forward: exactly once into the host database (real mosquitto, paho, umqtt.simple)",
     "Devices put readings into a MiniQueue and forward them (miniforward) through a loopback TCP proxy "
     "that cuts each connection at a random byte, to mosquitto and `mini ingest` processes sharing an "
     "MQTT 5 shared subscription. Faults: mosquitto SIGKILLed and restarted mid-stream, ingesters "
     "SIGKILLed under load, CPython device processes SIGKILLed (and restarted on the same queue), "
     "virtual boards power-cut while they forward. Every put that returned must be in SQLite exactly "
     "once (0 lost, 0 duplicates, also by content), each device's order recovered from its ids. "
     "'cut/kill points' counts every fault: kills, power cuts and the proxy's cuts."),
]


def run_tests(results_dir, scale, pytest_args):
    env = dict(os.environ, MINI_RELIABILITY_DIR=results_dir, MINI_TORTURE=scale)
    tests = [t for t in TORTURE_TESTS if os.path.exists(os.path.join(ROOT, t))]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"] + tests + list(pytest_args)
    started = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stdout.write(proc.stdout)
    tail = [line for line in proc.stdout.strip().splitlines() if line.strip()]
    return proc.returncode, (tail[-1] if tail else "no output"), time.time() - started, tests


def load(results_dir):
    path = os.path.join(results_dir, "results.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def number(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return "%.1f" % value
    return "{:,}".format(value)


def total(rows, field):
    return sum(row.get(field) or 0 for row in rows)


def versions():
    out = {"python": platform.python_version(), "cores": os.cpu_count()}
    try:
        mp = os.path.join(os.path.dirname(sys.executable), "micropython")
        proc = subprocess.run([mp, "-c", "import sys; print(sys.version)"], stdout=subprocess.PIPE, text=True)
        out["micropython"] = proc.stdout.strip()
    except OSError:
        out["micropython"] = "not found"
    try:
        out["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                       stdout=subprocess.PIPE, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True).stdout.strip()
        if dirty:
            out["commit"] += " (with uncommitted changes)"
    except OSError:
        out["commit"] = "unknown"
    return out


def mutation_summary():
    """The score `./run mutants` last wrote to MUTANTS.md (it is not part of this run: too slow)."""
    path = os.path.join(ROOT, "MUTANTS.md")
    intro = ("Plausible bugs put into a copy of the core one at a time (every sync and directory sync, "
             "every CRC check, every recovery step, every queue-state transition), each against the tests "
             "that should catch it: `./run mutants` (tools/mutants.py), not part of this run.")
    if not os.path.exists(path):
        return [intro, "", "No score recorded (MUTANTS.md is missing)."]
    with open(path, encoding="utf-8") as f:
        score = [line.strip() for line in f if line.startswith("**Mutation score")]
    return [intro, "", (score[0] if score else "No score line in MUTANTS.md.") + " Details: [MUTANTS.md](MUTANTS.md)."]


def report(rows, scale, outcome, seconds, tests):
    info = versions()
    lost = total(rows, "acked_lost")
    violations = total(rows, "violations")
    lines = [
        "# Reliability report",
        "",
        "Generated by `%s` on %s UTC: %s run (MINI_TORTURE=%s), %.0f s on %d cores; "
        "commit %s; CPython %s; the MicroPython unix port (sys.version %s)." % (
            "./run reliability" + (" --long" if scale == "long" else ""),
            datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), "the long" if scale == "long" else "the bounded",
            scale, seconds, info["cores"], info["commit"], info["python"], info["micropython"]),
        "",
        "pytest: %s" % outcome,
        "",
        "## Summary",
        "",
        "| | figure |",
        "|---|---|",
        "| power-cut points tried (operation x mode x configuration) | %s |" % number(
            total([r for r in rows if r["suite"] in ("powercut-sweep", "soak")], "checks")),
        "| SIGKILLs | %s |" % number(total([r for r in rows if r["suite"] == "sigkill"], "cut_points")),
        "| store-and-forward faults (kills, power cuts, cut connections) | %s |" % number(
            total([r for r in rows if r["suite"] == "forward"], "cut_points")),
        "| soak seeds | %s |" % number(total([r for r in rows if r["suite"] == "soak"], "seeds")),
        "| damaged files opened | %s |" % number(total([r for r in rows if r["suite"] == "damage"], "inputs")),
        "| fuzzed inputs | %s |" % number(total([r for r in rows if r["suite"] == "fuzz"], "inputs")),
        "| crash states a kernel can leave (ext4 data=ordered and weak POSIX models) | %s |" % number(
            total([r for r in rows if r["suite"] == "crash-states"], "checks")),
        "| acknowledged operations checked after a cut or kill | %s |" % number(total(rows, "acked_ops")),
        "| **acknowledged operations lost** | **%s** |" % number(lost),
        "| **invariant violations and unexpected exceptions** | **%s** |" % number(violations),
        "| FAT torn-sector hazards (counted apart, see below) | %s |" % number(total(rows, "hazards")),
        "",
    ]
    for suite, title, what in SUITES:
        mine = [r for r in rows if r["suite"] == suite]
        if not mine:
            lines += ["## %s" % title, "", "No results (the suite did not run or recorded nothing).", ""]
            continue
        lines += ["## %s" % title, "", what, "",
                  "| brick | filesystem | configuration | cut/kill points | seeds | checks | inputs "
                  "| acked ops | acked lost | violations | hazards | s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(mine, key=lambda r: (r.get("brick") or "", r.get("fs") or "", r.get("config") or "")):
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r.get("brick"), r.get("fs"), r.get("config") or "", number(r.get("cut_points")),
                number(r.get("seeds")), number(r.get("checks")), number(r.get("inputs")),
                number(r.get("acked_ops")), number(r.get("acked_lost")), number(r.get("violations")),
                number(r.get("hazards")), number(r.get("seconds"))))
        notes = [(r.get("brick"), r.get("fs"), r.get("config"), r.get("notes")) for r in mine if r.get("notes")]
        if notes:
            lines += ["", "Notes:", ""]
            for brick, fs, config, note in notes:
                lines.append("- %s, %s, %s: %s" % (brick, fs, config or "", note))
        lines.append("")
    wear = [r for r in rows if r.get("wear")]
    lines += ["## Flash wear under the soak", ""]
    if wear:
        lines += ["Erases per block over every block of the device after the workload; the ratio is "
                  "max / mean (1.0 is perfectly even).", "",
                  "| filesystem | configuration | blocks | max | mean | max / mean |", "|---|---|---|---|---|---|"]
        for r in wear:
            w = r["wear"]
            lines.append("| %s | %s | %s | %s | %.2f | %.2f |" % (
                r.get("fs"), r.get("config") or "", w.get("blocks"), w.get("max"), w.get("mean"), w.get("ratio")))
    else:
        lines.append("No wear figures were recorded.")
    lines += ["", "## Mutation testing", ""] + mutation_summary()
    lines += [
        "",
        "## FAT on NOR flash: the torn-sector hazard",
        "",
        "The ESP32 and RP2040 ports write a FAT sector as an erase of the 4096-byte block followed by "
        "a program. A power cut between the two wipes whatever the sector held, including data "
        "written and synced long before (and directory entries of other files). No file format on top "
        "can prevent that. `tests/mp/fat_torn_sector.py` shows it with a plain file and no brick: on FAT "
        "torn cuts lose flushed lines, on LittleFS none. The sweeps therefore count a failed check "
        "after a torn FAT sector rewrite that destroyed earlier bytes as a hazard, apart from the "
        "bricks' own losses, and print each one (`HAZARD` lines). Every other cut on FAT, and every "
        "cut on LittleFS, must lose nothing. Use LittleFS (the default on both boards).",
        "",
        "## Reproduce",
        "",
        "- this report: `./run reliability` (bounded) or `./run reliability --long`;",
        "- one suite: `MINI_TORTURE=long .venv/bin/python -m pytest -s tests/test_soak.py`;",
        "- a power-cut sweep: `.venv/bin/micropython -X heapsize=64M tests/mp/powercut_miniqueue.py fat-esp32 always`;",
        "- a failing soak seed or cut point is printed with the command that reproduces it;",
        "- the crash states of one workload: `.venv/bin/python tests/crashstate/explore.py miniqueue-always --model weak`;",
        "- the mutation score: `./run mutants` (writes MUTANTS.md).",
        "",
        "Tests run: %s." % ", ".join("`%s`" % t for t in tests),
        "",
    ]
    return "\n".join(lines), lost, violations


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="the long run (MINI_TORTURE=long)")
    parser.add_argument("--out", default=os.path.join(ROOT, "RELIABILITY.md"), help="report path")
    parser.add_argument("--results", help="keep the raw results (JSON lines) in this directory")
    parser.add_argument("--from-results", help="write the report from an earlier run's results directory")
    parser.add_argument("--outcome", help="with --from-results: how that run ended (for the report)")
    parser.add_argument("--seconds", type=float, default=0.0, help="with --from-results: how long it took")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    scale = "long" if args.long else "ci"
    if args.from_results:
        rows = load(args.from_results)
        code, seconds, tests = 0, args.seconds, TORTURE_TESTS
        outcome = args.outcome or "(report rebuilt from %s)" % args.from_results
    else:
        results = args.results or tempfile.mkdtemp(prefix="mini-reliability-")
        if os.path.exists(os.path.join(results, "results.jsonl")):
            os.remove(os.path.join(results, "results.jsonl"))
        code, outcome, seconds, tests = run_tests(results, scale, args.pytest_args)
        rows = load(results)
        print("raw results: %s" % os.path.join(results, "results.jsonl"))
    text, lost, violations = report(rows, scale, outcome, seconds, tests)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print("wrote %s: acknowledged operations lost %d, violations %d, pytest exit %d" % (
        args.out, lost, violations, code))
    return 1 if code or lost or violations else 0


if __name__ == "__main__":
    sys.exit(main())
