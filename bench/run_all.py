"""Run every bench/bench_*.py, one after another, with this interpreter, and show their output.

    python3 bench/run_all.py [-k SUBSTRING] [-- ARGS...]

-k runs only the benchmark files whose name contains SUBSTRING; ARGS after `--`
are passed to each of them (e.g. `-- --quick`). Each benchmark prints ratios to
baselines it measured in the same run. Exits non-zero if any benchmark failed.
"""
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)


def main(argv):
    args = list(argv)
    passed = []
    if "--" in args:
        cut = args.index("--")
        args, passed = args[:cut], args[cut + 1:]
    pattern = None
    if args[:1] == ["-k"] and len(args) > 1:
        pattern = args[1]
        args = args[2:]
    if args:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    names = sorted(n for n in os.listdir(HERE) if n.startswith("bench_") and n.endswith(".py"))
    if pattern:
        names = [n for n in names if pattern in n]
    if not names:
        print("no benchmark matches", file=sys.stderr)
        return 2
    print("mini benchmarks, %s" % time.strftime("%Y-%m-%d %H:%M %Z"))
    print("machine: %s %s, %s, %d cores; Python %s (%s)" % (
        platform.system(), platform.release(), platform.machine(), os.cpu_count() or 0,
        platform.python_version(), sys.executable))
    print("command: %s" % " ".join(["python3 bench/run_all.py"] + list(argv)))
    print()
    failed = []
    started = time.perf_counter()
    for name in names:
        print("=" * 78)
        print("%s" % name)
        print("=" * 78, flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, os.path.join(HERE, name)] + passed, cwd=TOP)
        if code != 0:
            failed.append(name)
            print("%s FAILED (exit %d)" % (name, code))
        print("(%s took %.0f s)\n" % (name, time.perf_counter() - t0), flush=True)
    print("%d benchmark file(s) in %.0f s%s" % (
        len(names), time.perf_counter() - started, "; FAILED: " + ", ".join(failed) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
