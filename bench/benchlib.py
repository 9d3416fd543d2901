"""What the benchmark files share: the core under test, a real-disk scratch dir,
interleaved timing rounds with medians, and running a MicroPython part.

The conventions are bench_ministore.py's (which keeps its own copy of them):
contenders take turns in many short rounds in a rotating order; a rate is the
median over the rounds and a ratio the median of the per-round ratios.
"""
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# MINI_BENCH_SHARED: benchmark a candidate copy of shared/ (kept outside the repo) instead.
SHARED = os.path.abspath(os.environ.get("MINI_BENCH_SHARED") or os.path.join(TOP, "shared"))
if SHARED not in sys.path:
    sys.path.insert(0, SHARED)

RAM_FS = {"tmpfs", "ramfs", "devtmpfs", "overlay-tmpfs"}


def record(i):
    """~100 bytes of JSON (the same shape as the other benchmarks' records)."""
    return {"t": 1700000000 + i, "sensor": "temp-%02d" % (i % 16), "value": 21.5 + (i % 100) / 10,
            "ok": True, "note": "abcdefghijklmnopqrstuvwxyz0123"}


# ---------------------------------------------------------------- scratch dir

def fs_type(path):
    """The type of the filesystem holding `path`, from /proc/mounts (None if unknown)."""
    path = os.path.realpath(path)
    best, kind = "", None
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        return None
    return kind


def disk_dir():
    """A new scratch dir on a real disk: under $MINI_BENCH_DIR, else the system temp dir
    unless that is a RAM filesystem, else the home directory."""
    for base in (os.environ.get("MINI_BENCH_DIR"), tempfile.gettempdir(), os.path.expanduser("~")):
        if base and os.path.isdir(base) and fs_type(base) not in RAM_FS:
            return tempfile.mkdtemp(prefix="mini-bench-", dir=base)
    raise SystemExit("no disk-backed directory for the fsync benchmarks: set MINI_BENCH_DIR")


class Fresh:
    """Names a new file or directory in the scratch dir."""

    def __init__(self, root):
        self.root = root
        self.n = 0

    def __call__(self, stem):
        self.n += 1
        return os.path.join(self.root, "%s-%d" % (stem, self.n))


def dir_bytes(path):
    total = 0
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            total += os.path.getsize(full)
    return total


# ---------------------------------------------------------------- timing

def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def user_cpu():
    try:
        import resource
    except ImportError:
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


class Result:
    """What interleaved() measured: per contender the median rate, the median of its
    per-round ratios to the baseline, and the user-mode CPU time per item."""

    def __init__(self, names, baseline):
        self.names = names
        self.baseline = baseline
        self.rates = {name: [] for name in names}
        self.times = {name: [] for name in names}
        self.cpu = {name: 0.0 for name in names}
        self.items = {name: 0 for name in names}

    def rate(self, name):
        return median(self.rates[name])

    def seconds(self, name):
        """Median seconds of one block of work."""
        return median(self.times[name])

    def ratio(self, name, baseline=None):
        base = self.rates[baseline or self.baseline]
        return median([a / b for a, b in zip(self.rates[name], base)])

    def range(self, name, baseline=None):
        """(lowest, highest) per-round ratio."""
        base = self.rates[baseline or self.baseline]
        ratios = [a / b for a, b in zip(self.rates[name], base)]
        return min(ratios), max(ratios)

    def cpu_us(self, name):
        return self.cpu[name] / self.items[name] * 1e6


def interleaved(rounds, contenders, baseline=None):
    """Run each contender once per round, in a rotating order, so that a slow spell
    of the machine hits all of them alike.

    contenders: [(name, fn)], fn() does one block of work and returns (items, seconds).
    Ratios are taken round by round (contender and baseline ran seconds apart),
    then the median over the rounds is reported.
    """
    names = [name for name, _ in contenders]
    result = Result(names, baseline or names[0])
    for r in range(rounds):
        shift = r % len(contenders)
        order = contenders[shift:] + contenders[:shift]
        for name, fn in order:
            gc.collect()
            cpu0 = user_cpu()
            items, secs = fn()
            result.cpu[name] += user_cpu() - cpu0
            result.items[name] += items
            result.rates[name].append(items / secs)
            result.times[name].append(secs)
    return result


def sync_latency(root, samples=200):
    """(median, 90th percentile) seconds of one os.write of a 130-byte line + os.fdatasync
    (os.fsync where there is none) in `root`: what one durable append waits for now."""
    import time
    sync = getattr(os, "fdatasync", os.fsync)
    path = os.path.join(root, "sync-latency")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    times = []
    try:
        for _ in range(samples):
            os.write(fd, b"x" * 129 + b"\n")
            t0 = time.perf_counter()
            sync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.remove(path)
    times.sort()
    return median(times), times[len(times) * 9 // 10]


def load_note():
    """The machine's load average, for the record of what else ran."""
    try:
        return "load average %.2f %.2f %.2f on %d cores" % (os.getloadavg() + (os.cpu_count() or 0,))
    except (AttributeError, OSError):
        return "load average unknown"


def fmt_rate(rate):
    return "{:,.0f}".format(rate)


def print_table(title, result, unit, ratio_label, cpu=False, cpu_label="user CPU/op"):
    print(title)
    width = max(len(name) for name in result.names)
    head = "  %-*s %12s  %-9s %8s" % (width, "", unit, "", ratio_label)
    print(head + ("  %14s" % cpu_label if cpu else ""))
    for name in result.names:
        line = "  %-*s %12s  %-9s %7.2fx" % (width, name, fmt_rate(result.rate(name)), "", result.ratio(name))
        if cpu:
            line += "  %11.1f us" % result.cpu_us(name)
        print(line)
    print()


# ---------------------------------------------------------------- MicroPython

def micropython_path():
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    return here if os.path.exists(here) else shutil.which("micropython")


def run_micropython(label, script, args=()):
    """Run `micropython -X heapsize=64M bench/SCRIPT ARGS... SHARED` from the repo root.

    The script prints "RESULT {json}" lines and ends with "DONE". Returns
    (results, command line, version); None (after saying why) if there is no
    micropython command; False (after showing its output) if the script failed.
    """
    exe = micropython_path()
    if exe is None:
        print("%s: skipped (no micropython command on PATH)\n" % label)
        return None
    cmd = [exe, "-X", "heapsize=64M", "bench/" + script] + [str(a) for a in args]
    if SHARED != os.path.join(TOP, "shared"):
        cmd.append("--shared=" + SHARED)
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([SHARED, os.path.join(TOP, "tests", "mp"),
                                          env.get("MICROPYPATH", ".frozen:~/.micropython/lib:/usr/lib/micropython")])
    proc = subprocess.run(cmd, cwd=TOP, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0 or not out.rstrip().endswith("DONE"):
        print("%s: FAILED (exit %d)\n%s\n" % (label, proc.returncode, out[-4000:]))
        return False
    results = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
    version = subprocess.run([exe, "-c", "import sys; print(sys.version)"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT).stdout.decode().strip()
    return results, " ".join(["micropython"] + cmd[1:]), version


def run_main(name, argv, cpython_part, micropython_part, notes=()):
    """The common main() of bench_*.py: flags, header, a scratch dir, timing, exit code.

    cpython_part(root, quick) runs in a fresh real-disk scratch dir that is removed
    afterwards; micropython_part() runs unless --no-mp, and returning False fails
    the run. `notes` are extra header lines.
    """
    import argparse
    import time
    parser = argparse.ArgumentParser(description="%s benchmarks" % name)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller sizes: a smoke run")
    parser.add_argument("--no-mp", action="store_true", help="skip the MicroPython benchmark")
    args = parser.parse_args(argv)
    root = disk_dir()
    started = time.perf_counter()
    failed = False
    try:
        print("%s benchmarks: Python %s on %s, %d cores, scratch dir %s (%s)" % (
            name, sys.version.split()[0], sys.platform, os.cpu_count() or 0, root, fs_type(root)))
        print("core under test: %s" % SHARED)
        for line in notes:
            print(line)
        print()
        cpython_part(root, args.quick)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not args.no_mp:
        failed = micropython_part() is False
    print("bench_%s.py: %.0f s" % (name, time.perf_counter() - started))
    return 1 if failed else 0


def singles_vs_batch(rounds, items, singles, batches, add_one, add_many, names):
    """Interleave `singles` calls of add_one(item) with `batches` calls of add_many(items).

    Rates count items, so the ratio is items per second in batches vs one by one.
    """
    import time
    size = len(items)

    def one_by_one():
        t0 = time.perf_counter()
        for _ in range(singles // size):
            for item in items:
                add_one(item)
        return singles // size * size, time.perf_counter() - t0

    def batched():
        t0 = time.perf_counter()
        for _ in range(batches):
            add_many(items)
        return batches * size, time.perf_counter() - t0

    return interleaved(rounds, [(names[0], one_by_one), (names[1], batched)])
