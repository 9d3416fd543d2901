"""Heap figures of the bricks on the emulated microcontroller (tools/firmware.py).

    python3 bench/mcu_heap.py [--quick]

ports/qemu BOARD=MICROBIT under qemu-system-arm: Cortex-M0, float32, 31-bit small
ints, 4-byte words (the unix port's objects are twice as big). Heap figures are
gc.mem_alloc() after gc.collect(), in bytes; they are measured, not timed, so they do
not depend on the machine's load. Each line is one fresh boot of the board.

1. Import heap of each brick: what `import brick` adds when the bricks it needs are
   already imported, and all five modules from an empty interpreter:
   - .py on LittleFS (compiled on the board at import),
   - .mpy on LittleFS (as `mip` installs them; micropython/build_mpy.py),
   - .mpy in ROMFS (run in place from flash),
   - frozen into the firmware with micropython/manifest.py (microbit-frozen).
2. The smallest heap each workload runs in (bricks frozen, LittleFS with the
   RP2040 geometry on a RAM block device outside the heap): a ballast allocated
   first (in 256-byte pieces, so that it fills the holes of a fragmented heap as
   well as its end) shrinks the free heap of the 192 KB build; a binary search
   finds the largest ballast the workload still passes with. The figure is the
   heap in use before the workload (interpreter, imports, block device objects)
   plus the free heap left after that ballast (gc.mem_free()):
   - 1,000 appends of a small record (sync="always");
   - StateManager recovery: 10,000 records journaled, a snapshot at 5,000 (state:
     a dict of 100 counters), reopened = the snapshot + 5,000 records replayed;
   - a queue of 1,000 messages: put them all, then get + ack each.
3. The smallest heap on which each brick's core suite passes, every test of it
   (tests/core/test_<brick>.py on lfs2-rp2040, ROMFS code, the same ballast search
   at 4 KB steps, one bytearray allocated at boot).

Not measured here: the 128 KB build's numbers are the 192 KB ones (the ballast
is the difference); peak heap between two collections is not observable, so a
"smallest heap" is the figure to read.
"""
import os
import shutil
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))
sys.path.append(os.path.join(TOP, "tools"))
sys.path.insert(0, os.path.join(TOP, "micropython"))
import firmware  # noqa: E402
import mcudriver  # noqa: E402
import test_mcu  # noqa: E402 (its XFAIL list)

import bricks  # noqa: E402 (micropython/bricks.py: what each module imports)

BRICKS = ["ministore", "minisnap", "ministate", "miniqueue"]
# Every module the four bricks need, dependencies first (minishim, the journal's modules,
# minilog), and what each one needs before it: read from the imports, not listed here.
MODULES = []
for _brick in BRICKS:
    MODULES += [_m for _m in bricks.closure(_brick) if _m not in MODULES]
DEPS = dict((m, bricks.closure(m)[:-1]) for m in MODULES)
HEAP_192K = 196608

IMPORT_PROBE = """
import sys, gc
sys.path[:0] = %(path)r
%(setup)s
for dep in %(deps)r:
    __import__(dep)
gc.collect(); base = gc.mem_alloc()
__import__(%(brick)r)
gc.collect()
print("HEAP", gc.mem_alloc() - base)
"""

IMPORT_ALL = """
import sys, gc
sys.path[:0] = %(path)r
%(setup)s
gc.collect(); base = gc.mem_alloc()
for brick in %(bricks)r:
    __import__(brick)
gc.collect()
print("HEAP", gc.mem_alloc() - base)
"""

COPY_TO_FLASH = """
import extram, blockdev, vfs, os
extram.install()
flash, fs = blockdev.make_fs("lfs2", "rp2040", blocks=64)
vfs.mount(fs, "/flash")
for name in os.listdir(%(src)r):
    with open(%(src)r + "/" + name, "rb") as f, open("/flash/" + name, "wb") as g:
        g.write(f.read())
del f, g
"""

WORKLOAD = """
import sys, gc
sys.path[:0] = ["/rom/tests/mcu", "/rom/tests/mp"]
import extram, blockdev, vfs
extram.install()
import minishim, ministore, minisnap, ministate, miniqueue
_mounts = [0]


def fresh():
    _mounts[0] += 1
    point = "/f%%d" %% _mounts[0]
    flash, fs = blockdev.make_fs("lfs2", "rp2040", blocks=256)
    vfs.mount(fs, point)
    return point


def appends(point):
    with ministore.MiniStore.open(point + "/log.jsonl") as store:
        for i in range(1000):
            store.append({"t": i, "v": 23})


class Inc(ministate.Mutator):
    def __init__(self, key, by):
        self.key = key
        self.by = by

    def apply(self, state):
        state[self.key] = state.get(self.key, 0) + self.by


STATE_DIR = [None]


def prepare_state():
    point = fresh()
    STATE_DIR[0] = point + "/state"
    sm = ministate.StateManager.open(STATE_DIR[0], initial={}, mutators=[Inc], snapshot_every=None, sync=100)
    for i in range(10000):
        sm.apply(Inc(key="k%%d" %% (i %% 100), by=1))
        if i == 4999:
            sm.create_snapshot()
    sm.close()


def recovery(point):
    sm = ministate.StateManager.open(STATE_DIR[0], initial={}, mutators=[Inc], snapshot_every=None)
    assert sm.seq == 10000 and sm.state["k0"] == 100, (sm.seq, sm.state.get("k0"))
    sm.close()


def queue(point):
    q = miniqueue.MiniQueue.open(point + "/q", max_bytes=64 * 1024)
    for i in range(1000):
        q.put({"t": i})
    for i in range(1000):
        mid, msg = q.get()
        q.ack(mid)
    q.close()


def passes(work, ballast):
    gc.collect()
    try:
        # In pieces: one bytearray would need that much contiguous heap, and the heap
        # left after prepare_state() is fragmented, so the search would measure the
        # largest hole rather than what the workload needs.
        hold = [bytearray(240) for _ in range(ballast // 256)]
    except MemoryError:
        return False
    gc.collect()
    print("LEFT", gc.mem_free())  # the free heap the workload gets
    point = None
    try:
        point = fresh() if work is not recovery else None
        work(point)
        return True
    except MemoryError:
        return False
    finally:
        hold = None
        if point is not None:
            vfs.umount(point)  # a mounted filesystem keeps its buffers: one per trial would add up
        for key in list(minishim._held):
            del minishim._held[key]
        gc.collect()


work = %(work)s
if work is recovery:
    prepare_state()
gc.collect()
print("BASE", gc.mem_alloc())
print("FREE", gc.mem_free())
print("PASSED" if passes(work, %(ballast)d) else "MEMORYERROR")
"""


def run(target, script, image=None, timeout=1800):
    code, out = firmware.run(target, script, image, timeout)
    return out


def value(out, key):
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == [key]:
            return int(parts[1])
    raise RuntimeError("no %s in the board's output:\n%s" % (key, out[-3000:]))


def code_images(tmp):
    """ROMFS images of the core under /rom/code, as .py and as .mpy (build_mpy.py), with the
    helpers that copy it to LittleFS: {"py": path, "mpy": path}."""
    import build_mpy
    src_py = os.path.join(tmp, "py", "code")
    os.makedirs(src_py)
    for module in MODULES:
        shutil.copy(os.path.join(TOP, "shared", module + ".py"), src_py)
    src_mpy = os.path.join(tmp, "mpy", "code")
    os.makedirs(src_mpy)
    build_mpy.build(src_mpy)
    for folder in ("py", "mpy"):  # the ROMFS holds the files and the helpers that copy them
        shutil.copytree(os.path.join(TOP, "tests", "mcu"), os.path.join(tmp, folder, "tests", "mcu"))
        os.makedirs(os.path.join(tmp, folder, "tests", "mp"))
        shutil.copy(os.path.join(TOP, "tests", "mp", "blockdev.py"), os.path.join(tmp, folder, "tests", "mp"))
    images = {}
    for folder in ("py", "mpy"):
        images[folder] = os.path.join(tmp, folder + ".img")
        # --no-mpy for the .py image: its code must reach the board as source
        cmd = [os.path.join(os.path.dirname(sys.executable), "mpremote"), "romfs", "-o", images[folder]]
        if folder == "py":
            cmd.append("--no-mpy")
        subprocess.run(cmd + ["build", os.path.join(tmp, folder)], check=True, stdout=subprocess.DEVNULL)
    return images


def romfs_import_heap(tmp):
    """The import heap of the four bricks, .mpy run in place from ROMFS (one boot)."""
    image = code_images(tmp)["mpy"]
    return value(run("microbit-192k", IMPORT_ALL % dict(path=["/rom/code"], setup="", bricks=BRICKS), image), "HEAP")


def import_heaps(tmp):
    """{variant: {brick: bytes, "all": bytes}} for .py / .mpy on LittleFS, ROMFS .mpy, frozen."""
    images = code_images(tmp)
    helpers = ["/rom/tests/mcu", "/rom/tests/mp"]
    variants = [
        (".py on LittleFS", "microbit-192k", images["py"], ["/flash"] + helpers, COPY_TO_FLASH % {"src": "/rom/code"}),
        (".mpy on LittleFS", "microbit-192k", images["mpy"], ["/flash"] + helpers, COPY_TO_FLASH % {"src": "/rom/code"}),
        (".mpy in ROMFS", "microbit-192k", images["mpy"], ["/rom/code"], ""),
        ("frozen", "microbit-frozen", None, [], ""),
    ]
    table = {}
    for label, target, image, path, setup in variants:
        row = {}
        for module in MODULES:
            row[module] = value(run(target, IMPORT_PROBE % dict(
                path=path, setup=setup, deps=DEPS[module], brick=module), image), "HEAP")
        # All four bricks into an empty interpreter, measured in one boot (not a sum).
        row["all"] = value(run(target, IMPORT_ALL % dict(path=path, setup=setup, bricks=BRICKS), image), "HEAP")
        table[label] = row
        print("  %-17s %s" % (label, "  ".join("%s %d" % (m, row[m]) for m in MODULES + ["all"])), flush=True)
    return table


def bisect(target, image, script_for, passed, step):
    """The largest ballast (to `step` bytes) with which script_for(ballast) passes, and the
    output of that trial: one boot per trial, a trial that does not finish in
    TRIAL_SECONDS counts as failed (and is noted)."""
    lo, hi, hung, out_lo = 0, HEAP_192K, 0, None
    while hi - lo > step:
        mid = (lo + hi) // 2
        code, out = firmware.run(target, script_for(mid), image, TRIAL_SECONDS)
        hung += code == -1
        if passed(out):
            lo, out_lo = mid, out
        else:
            hi = mid
    return lo, hung, out_lo


TRIAL_SECONDS = 240


def workload_heaps(image, step):
    rows = {}
    for work in ("appends", "recovery", "queue"):
        script_for = lambda ballast: WORKLOAD % {"work": work, "ballast": ballast}
        out = run("microbit-frozen", script_for(0), image)
        if "PASSED" not in out:
            print("  %s fails on the full heap: %s" % (work, out.strip()[-500:]))
            continue
        base = value(out, "BASE")
        lo, hung, out_lo = bisect("microbit-frozen", image, script_for, lambda o: "PASSED" in o, step)
        needed = value(out_lo or out, "LEFT")  # the least free heap it passed with
        rows[work] = (base, needed)
        print("  %-9s in use before %6d, free heap needed %6d: runs in a heap of %6d bytes%s" % (
            work, base, needed, base + needed,
            " (%d trial(s) hung: see the report)" % hung if hung else ""), flush=True)
    return rows


SUITE_PROBE = """
import sys, gc
hold = bytearray(%(ballast)d) if %(ballast)d else None
""" + "\n".join(["sys.path[:0] = %r" % mcudriver.ROM_PATH, "import extram", "extram.install()",
                 "sys.argv[:] = ['runner.py', 'lfs2-rp2040', %(module)r] + %(xfail)r", "import runner"])


def suite_passed(out):
    last = out.strip().splitlines()[-1] if out.strip() else ""
    return last.endswith(" 0 failed") and "Traceback" not in out


SUITES = ["test_ministore", "test_minisnap", "test_ministate", "test_miniqueue"]  # the four bricks'


def suite_heaps(image, step):
    rows = {}
    for module in SUITES:
        lo, hi = 0, HEAP_192K  # largest ballast that passes, by bisection
        # Strict: a MemoryError fails the suite (test_mcu.py's --memory-errors-ok would
        # count it apart, and every heap would "pass").
        xfail = test_mcu._expected("microbit-192k", "lfs2-rp2040")
        probe = lambda ballast: SUITE_PROBE % {"ballast": ballast, "module": module, "xfail": xfail}
        out = run("microbit-192k", probe(0), image)
        if not suite_passed(out):
            print("  %s: fails on the full 192 KB heap" % module)
            continue
        lo, hung, _ = bisect("microbit-192k", image, probe, suite_passed, step)
        rows[module] = HEAP_192K - lo
        print("  %-18s passes on a heap of %6d bytes (192 KB minus a %d-byte ballast)%s" % (
            module, HEAP_192K - lo, lo, " (%d trial(s) hung)" % hung if hung else ""), flush=True)
    return rows


def main(argv):
    quick = "--quick" in argv
    try:
        for target in ("microbit-192k", "microbit-frozen"):
            firmware.build(target)
    except firmware.Unavailable as exc:
        print("skipped: %s" % exc)
        return 0
    tmp = tempfile.mkdtemp(prefix="mini-mcu-bench-")
    try:
        print("1. import heap (bytes), each module after its dependencies; all = the four bricks from an empty interpreter")
        import_heaps(tmp)
        image = mcudriver.romfs_image(tmp)
        print("2. smallest heap for each workload (bricks frozen, 192 KB build, lfs2-rp2040)")
        workload_heaps(image, 8192 if quick else 2048)
        print("3. smallest heap on which each core suite module passes (lfs2-rp2040, ROMFS code)")
        suite_heaps(image, 16384 if quick else 4096)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
