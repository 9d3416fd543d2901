# The power-cut sweep shared by tests/mp/powercut_*.py (MicroPython unix port).
# A script defines its workload and its checks; this module owns the rest:
#   - configurations: "lfs2-esp32", "lfs2-rp2040", "fat-esp32" or "fat-rp2040",
#     each with a sync policy ("always" or an int), from the command line;
#   - the flash: a fresh RAMFlash formatted and mounted at MOUNT, and a reboot
#     that mounts a powered-on copy of an image with a fresh vfs object;
#   - the acknowledged bookkeeping: call() runs one workload call and says whether
#     it was acknowledged (it returned with the power still on), finish() records
#     how the workload ended and that no writer lock outlived it;
#   - the cut loop: the workload runs once uncut to count its program/erase ops
#     start..end-1 (start = the count after mkfs and mount), then for every op k
#     and every mode of blockdev.MODES ("raise", "torn", "drop", "reorder") a fresh
#     filesystem (on NOR flash semantics) runs it with the
#     power cut at op k (after_cut = "lost": nothing reaches the flash after the
#     cut) and the script's verify() judges a reboot onto a copy of the image.
# Each (configuration, cut point, mode) is one check; main() ends with
# "N passed, N failed".
import gc
import sys
import os
import time
import vfs

import blockdev
import minishim

MOUNT = "/pc"
BLOCKS = 128
MODES = blockdev.MODES
MAX_REPORTS = 20  # failure details printed per configuration
SWEEP = {}  # figures of the last sweep, for report()
# Cut at every STRIDE-th op only (1: every op). The emulated microcontroller
# (tests/test_mcu.py) runs 15-20x slower than the unix port and sets it higher.
STRIDE = 1


def parse_configs(argv, default):
    """[(fs name, sync)] from argv ("FS SYNC FS SYNC ..."), or `default` when there are none."""
    if len(argv) <= 1:
        return list(default)
    if len(argv) % 2 != 1:
        raise SystemExit("usage: %s [FS SYNC ...]" % argv[0])
    configs = []
    for i in range(1, len(argv), 2):
        sync = argv[i + 1]
        configs.append((argv[i], sync if sync == "always" else int(sync)))
    return configs


def now():
    """Seconds, for the figures; the emulated microcontroller has no time.time() (no clock)."""
    if hasattr(time, "time"):
        return time.time()
    return time.ticks_ms() / 1000


# ---------------------------------------------------------------- the flash

def umount():
    try:
        vfs.umount(MOUNT)
    except Exception:
        pass


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def forget_dead_files():
    """Drop the files the shim holds because their close() failed on a device now gone.

    The shim keeps them so that the collector never finalizes one onto the flash it
    failed on (minishim._unclosable). After a power cut that flash is discarded (a new
    one, or a copy at reboot), and a real board would have lost its RAM anyway. Kept,
    they piled up (764 per sweep seed), fragmenting the heap until a sweep of several
    seeds in one process slowed down seed after seed and died of MemoryError.
    """
    for f in minishim._unclosable:
        try:
            f.close()  # now, not in the collector, where the error it raises cannot even be built
        except OSError:
            pass
    del minishim._unclosable[:]


def fresh(kind, geometry):
    """A new flash, formatted with `kind` and mounted at MOUNT."""
    forget_dead_files()
    flash, fs = blockdev.make_fs(kind, geometry, blocks=BLOCKS)
    vfs.mount(fs, MOUNT)
    return flash


def reboot(kind, geometry, flash):
    """Mount a powered-on copy of `flash` at MOUNT with a fresh vfs object; return the copy."""
    umount()
    image = flash.copy()
    forget_dead_files()  # after the copy: nothing they do can reach the rebooted image
    vfs.mount(blockdev.mount_fs(kind, geometry, image), MOUNT)
    return image


# ---------------------------------------------------------------- acknowledged bookkeeping

class Outcome:
    """How one run of a workload ended."""

    def __init__(self):
        self.acked = 0       # operations acknowledged before the cut (what that counts is the script's)
        self.attempted = 0   # operations attempted (the call the cut stopped included)
        self.error = None    # exception that stopped the workload
        self.leaked = False  # a writer lock outlived the workload
        self.info = {}       # anything else the script wants verify() to see


def call(flash, what, fn, *args):
    """Run one workload call; return (its result, acknowledged).

    Acknowledged: every program/erase op of the call happened before the cut, so its
    caller was told the call succeeded with the power on. A call that returns although
    the op cut under "raise", "torn" or "reorder" failed is a bug (it swallowed an I/O error).
    """
    was_dead = flash.dead
    result = fn(*args)
    if flash.dead and not was_dead and flash.mode != "drop":
        raise AssertionError("%s returned although op %d failed" % (what, flash.cut_at))
    return result, not flash.dead


def finish(flash, out, error, left_open):
    """Record how the workload ended.

    error: the exception that stopped it, or None. left_open: True if a handle was
    still open when it ended (the caller has abandoned it without writing, as after a
    reboot); that is a failure if the workload ran to its end with the power on.
    Any writer lock still held now leaked (it would refuse the next open in this
    process): it is noted and cleared.
    """
    out.error = error
    if left_open and not flash.dead and out.error is None:
        out.error = AssertionError("workload left a handle open")
    if minishim._held:
        out.leaked = True
        for key in list(minishim._held):
            del minishim._held[key]
    return out


# ---------------------------------------------------------------- the cut loop

def sweep(name, sync, run_workload, verify, stats, total):
    """Cut the power at every program/erase op of the workload, in every mode.

    run_workload(flash, sync) -> Outcome runs the workload on the filesystem at MOUNT
    and never raises. verify(kind, geometry, flash, sync, out, stats) reboots onto a
    copy of `flash` (MOUNT is unmounted when it is called) and returns None or what is
    wrong. The uncut run must acknowledge `total` operations and pass verify().
    Returns (passed, failed, start, end): the workload's ops are start..end-1.
    """
    kind, geometry = name.split("-")
    label = "%s %s" % (name, sync)

    # The uncut run: count the ops and check the workload itself.
    SWEEP.update(cut_points=0, checks=0, acked_ops=0, hazards=0, hazard_examples=[], started=now())
    flash = fresh(kind, geometry)
    start = flash.ops
    out = run_workload(flash, sync)
    end = flash.ops
    if out.error is not None or out.leaked or out.acked != total:
        umount()
        print("FAIL %s: the uncut workload failed: %r (acked %d of %d, leaked %r)" % (
            label, out.error, out.acked, total, out.leaked))
        if out.error is not None:
            _print_exception(out.error)
        return 0, 1, start, end
    umount()
    problem = verify(kind, geometry, flash, sync, out, stats)
    umount()
    if problem is not None:
        print("FAIL %s: the uncut workload: %s" % (label, problem))
        return 0, 1, start, end
    stats.reset()  # count the cuts only

    passed = failed = 0
    SWEEP.update(cut_points=end - start, checks=0, acked_ops=0, hazards=0, hazard_examples=[],
                 started=now())
    for k in range(start, end, STRIDE):
        for mode in MODES:
            flash = fresh(kind, geometry)
            out = None
            if flash.ops != start:
                problem = "mkfs+mount took %d ops, not %d" % (flash.ops, start)
            else:
                flash.mode = mode
                flash.after_cut = "lost"  # nothing reaches the flash after the cut
                flash.cut_at = k
                out = run_workload(flash, sync)
                if not flash.dead:
                    problem = "the workload ended before op %d was reached" % k
                elif out.leaked:
                    problem = "a writer lock leaked after %r" % (out.error,)
                elif out.error is not None and not isinstance(out.error, OSError) and mode != "drop":
                    # raise/torn/reorder: the cut itself raises, and nothing else may go wrong
                    problem = "workload raised %r" % (out.error,)
                elif out.error is None and mode != "drop":
                    problem = "the cut did not raise"
                else:
                    umount()
                    counters = _counters(stats)
                    problem = verify(kind, geometry, flash, sync, out, stats)
                    if problem is not None and flash.torn_rewrite_lost:
                        # FAT rewrote a sector as erase + program and the cut tore it:
                        # bytes the filesystem had written before are gone. No file
                        # format can survive that; it is counted apart, not as the
                        # brick's loss (tests/mp/fat_torn_sector.py shows plain files
                        # lose data the same way).
                        _restore(stats, counters)
                        SWEEP["hazards"] += 1
                        SWEEP["hazard_examples"].append("cut_at=%d: %s" % (k, problem))
                        problem = None
                        passed -= 1
            umount()
            if out is not None:
                SWEEP["acked_ops"] += out.acked
            if problem is None:
                passed += 1
            else:
                failed += 1
                if failed <= MAX_REPORTS:
                    print("FAIL %s cut_at=%d mode=%s acked=%s stopped by %r: %s" % (
                        label, k, mode, out.acked if out else "-", out.error if out else None, problem))
                    if out is not None and out.error is not None and not isinstance(out.error, OSError):
                        _print_exception(out.error)  # where: a MemoryError says only how many bytes
            if out is not None:
                # On the 192 KB board the scripts' models (out.info) of earlier checks stayed
                # reachable after them, 13 KB more by the end of the queue sweep, until it
                # returned; dropped here, the heap is the same at every check.
                out.info.clear()
            flash = out = None
            gc.collect()
    SWEEP["checks"] = len(range(start, end, STRIDE)) * len(MODES)
    return passed, failed, start, end


def _print_exception(exc):
    if hasattr(sys, "print_exception"):
        sys.print_exception(exc)  # pyright: ignore[reportAttributeAccessIssue] (MicroPython)


def _counters(stats):
    return dict((name, value) for name, value in stats.__dict__.items() if isinstance(value, int))


def _restore(stats, counters):
    for name in counters:
        setattr(stats, name, counters[name])


def report(brick, name, sync, acked_lost, violations, notes=""):
    """Print the RESULT line of the last sweep (tests/reliability.py collects it)."""
    hazard = ""
    if SWEEP["hazards"]:
        hazard = "; %d torn FAT sector rewrites destroyed earlier data (filesystem hazard, counted apart)" % (
            SWEEP["hazards"])
    print("RESULT " + minishim.dumps({
        "suite": "powercut-sweep", "brick": brick, "fs": name,
        "config": "sync=%s, %s x modes %s" % (
            sync, "every op" if STRIDE == 1 else "every %dth op" % STRIDE, "/".join(MODES)),
        "cut_points": len(range(SWEEP["cut_points"])[::STRIDE]), "seeds": 0, "checks": SWEEP["checks"],
        "acked_ops": SWEEP["acked_ops"], "acked_lost": acked_lost, "violations": violations,
        "hazards": SWEEP["hazards"], "seconds": now() - SWEEP["started"],
        "notes": notes + hazard}))
    for example in SWEEP["hazard_examples"][:3]:
        print("HAZARD %s %s: %s" % (name, sync, example))


def main(argv, default, run_config):
    """Run run_config(name, sync) -> (passed, failed) for each configuration; return the exit code."""
    passed = failed = 0
    for name, sync in parse_configs(argv, default):
        p, f = run_config(name, sync)
        passed += p
        failed += f
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0
