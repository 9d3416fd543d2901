# ministate with its journal on a raw flash region (miniflashlog, FORMAT.md 6), the
# snapshots in files. Runs under pytest on CPython and tests/mp/runner.py on the
# MicroPython unix port. The power-cut sweep needs LittleFS for the snapshots, on the
# same flash as the region, so it runs on MicroPython only (once: on "posix").
import os

try:
    import blockdev
except ImportError:  # CPython: pytest puts tests/core on the path, not tests/mp
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mp"))
    import blockdev

import flashsweep
import support
from support import scratch, raises
import minishim
import miniflash
from miniflash import Region, RegionFull
from minilog import CompactionGap
from ministate import StateManager, Mutator

SECTOR = 4096


class Add(Mutator):
    def __init__(self, by, pad=""):
        self.by = by
        self.pad = pad

    def apply(self, state):
        state["n"] += self.by


def total(k):
    return k * (k - 1) // 2  # 0 + 1 + ... + k-1


def test_a_state_journal_on_a_region_goes_round_the_ring():
    d = scratch()
    flash = blockdev.RAMFlash(SECTOR, 4)
    sm = StateManager.open(d, initial={"n": 0}, mutators=[Add], snapshot_every=8, region=flash)
    for i in range(200):  # about 17 sectors of records: four times round the ring
        assert sm.apply(Add(i, "x" * 300)) == i + 1
    sm.close()
    assert min(flash.block_erases) >= 3 and max(flash.block_erases) - min(flash.block_erases) <= 1
    assert not [n for n in os.listdir(d) if n.startswith("journal-")]  # no journal files
    sm = StateManager.open(d, initial={"n": 0}, mutators=[Add], snapshot_every=8, region=flash)
    assert sm.state == {"n": total(200)} and sm.seq == 200
    sm.apply_many([Add(1), Add(2)])
    sm.close()
    state, seq, snap = StateManager.load(d, {"n": 0}, [Add], region=flash)
    assert state == {"n": total(200) + 3} and seq == 202 and snap <= 200


def test_a_state_that_never_snapshots_fills_the_region_then_recovers():
    d = scratch()
    flash = blockdev.RAMFlash(SECTOR, 3)
    sm = StateManager.open(d, initial={"n": 0}, mutators=[Add], snapshot_every=None, region=flash)
    applied = 0
    err = None
    while err is None:
        try:
            sm.apply(Add(1, "y" * 200))
            applied += 1
        except RegionFull as exc:
            err = exc
    # Refused before the apply (FlashStore.check_batch): the manager stays open, the state
    # without it. (Until 2026-12-05 the apply ran first and the manager closed.)
    assert not sm.closed and sm.state == {"n": applied}
    raises(RegionFull, sm.apply, Add(1, "y" * 200))  # again: nothing changed
    sm.create_snapshot()  # covers the journal: its sectors may go round again
    sm.apply(Add(5, "y" * 200))
    assert sm.state == {"n": applied + 5}
    sm.close()
    assert StateManager.load(d, {"n": 0}, [Add], region=flash)[0] == {"n": applied + 5}
    sm = StateManager.open(d, initial={"n": 0}, mutators=[Add], snapshot_every=None, region=flash)
    assert sm.state == {"n": applied + 5}
    sm.close()


def test_a_batch_a_sector_cannot_hold_is_refused_before_it_is_applied():
    d = scratch()
    flash = blockdev.RAMFlash(SECTOR, 4)
    sm = StateManager.open(d, initial={"n": 0}, mutators=[Add], region=flash)
    sm.apply(Add(1))
    err = raises(ValueError, sm.apply_many, [Add(1, "b" * 200) for _ in range(20)])
    assert "do not fit in one sector" in str(err)
    assert not sm.closed and sm.state == {"n": 1}
    sm.apply_many([Add(1, "b" * 200) for _ in range(10)])  # a batch that fits
    sm.close()
    assert StateManager.load(d, {"n": 0}, [Add], region=flash)[0] == {"n": 11}


def test_a_retain_policy_is_refused_and_a_lost_snapshot_is_a_gap():
    d = scratch()
    flash = blockdev.RAMFlash(SECTOR, 3)
    raises(ValueError, StateManager.open, d, {"n": 0}, [Add], region=Region(flash, retain=0))
    assert not minishim._held
    sm = StateManager.open(d, initial={"n": 0}, mutators=[Add], snapshot_every=5, region=flash)
    for i in range(100):
        sm.apply(Add(1, "z" * 300))
    sm.close()
    for name in os.listdir(d):
        if name.startswith("snap-"):
            os.remove(d + "/" + name)
    raises(CompactionGap, StateManager.open, d, {"n": 0}, [Add], region=flash)
    raises(CompactionGap, StateManager.load, d, {"n": 0}, [Add], region=flash)
    assert not minishim._held


def test_the_journal_reaches_back_to_the_oldest_snapshot_kept():
    d = scratch()
    flash = blockdev.RAMFlash(SECTOR, 4)
    sm = StateManager.open(d, initial={"n": 0}, mutators=[Add], snapshot_every=None, keep=2, region=flash)
    for i in range(12):  # about 2 sectors
        sm.apply(Add(1, "w" * 600))
    first = sm.create_snapshot()
    for i in range(6):
        sm.apply(Add(1, "w" * 600))
    sm.create_snapshot()
    applied = 18
    try:
        while True:  # the sectors after the first snapshot must not be reused
            sm.apply(Add(1, "w" * 600))
            applied += 1
    except RegionFull:
        pass
    assert not sm.closed and sm.state == {"n": applied}  # the refused apply is not applied
    sm.close()
    reader = miniflash.FlashReader(flash)
    list(reader)
    assert reader.base_seq <= first
    # The newest snapshot damaged: recovery falls back to the older one and its journal.
    snaps = sorted(n for n in os.listdir(d) if n.startswith("snap-"))
    path = d + "/" + snaps[-1]
    data = bytearray(support.read_bytes(path))
    data[10] ^= 1
    support.write_bytes(path, bytes(data))
    sm = StateManager.open(d, initial={"n": 0}, mutators=[Add], snapshot_every=None, region=flash)
    assert sm.fell_back and sm.state == {"n": applied}  # the apply that met RegionFull is not in it
    sm.close()


# ---------------------------------------------------------------- power cuts (MicroPython)

MOUNT = "/flashstate"
FS_BLOCKS = 48
REGION_SECTORS = 4


def _workload(steps):
    calls = []
    for _ in range(steps):
        calls.append(("apply", 1))
    calls[7] = ("many", 3)
    calls[19] = ("snapshot", 0)
    calls[23] = ("reopen", 0)
    return calls


def _mount(flash, fresh):
    import vfs
    part = miniflash.SubDevice(flash, 0, FS_BLOCKS)
    if fresh:
        vfs.VfsLfs2.mkfs(part, readsize=256, progsize=256, lookahead=32)
    vfs.mount(vfs.VfsLfs2(part, readsize=256, progsize=256, lookahead=32), MOUNT)


def _umount():
    import vfs
    try:
        vfs.umount(MOUNT)
    except OSError:
        pass


def _open(flash):
    region = Region(flash, start=FS_BLOCKS, sectors=REGION_SECTORS, prog=256)
    return StateManager.open(MOUNT + "/state", initial={"n": 0}, mutators=[Add], snapshot_every=6, region=region)


def _run(flash, calls):
    """Run the workload; return (acknowledged adds, attempted adds, boundaries)."""
    acked = attempted = 0
    bounds = [0]
    sm = None
    try:
        sm = _open(flash)
        for kind, count in calls:
            if kind == "apply":
                attempted += 1
                bounds.append(attempted)  # a call the cut stops may still have landed whole
                sm.apply(Add(1, "p" * 600))
            elif kind == "many":
                attempted += count
                bounds.append(attempted)
                sm.apply_many([Add(1, "q" * 100) for _ in range(count)])
            elif kind == "snapshot":
                sm.create_snapshot()
            else:
                sm.close()
                sm = _open(flash)
            if not flash.dead:
                acked = attempted
        sm.close()
    except OSError:  # the power cut
        pass
    except Exception as exc:
        if flash.mode != "drop":  # after a silent drop, the workload's own reopen reads what it lost
            acked = -1 - attempted
            bounds = ["workload raised %r" % (exc,)]
    if sm is not None and not sm.closed and sm._log is not None:
        sm._log.store._abandon()
        sm._log.lock.release()
    for key in list(minishim._held):
        del minishim._held[key]
    return acked, attempted, bounds


def _verify(flash, acked, bounds):
    image = flash.copy()
    _mount(image, False)
    try:
        sm = _open(image)
        n = sm.state["n"]
        if n < acked or n not in bounds:
            return "state %d: acked %d, boundaries %r" % (n, acked, bounds)
        sm.apply(Add(1))
        sm.close()
        sm = _open(image)
        if sm.state["n"] != n + 1:
            return "after one more apply: %r" % (sm.state,)
        sm.close()
    except Exception as exc:
        return "recovery failed: %r" % (exc,)
    finally:
        for key in list(minishim._held):  # what a failed check left open
            del minishim._held[key]
        _umount()
    return None


def test_state_on_a_region_power_cut_at_every_program_and_erase():
    if not support.MICROPYTHON or support.FS != "posix":
        return  # needs LittleFS on the same flash (vfs): the unix port, once
    long = os.getenv("MINI_TORTURE") == "long"
    calls = _workload(90 if long else 36)
    flash = blockdev.RAMFlash(SECTOR, FS_BLOCKS + REGION_SECTORS)
    _mount(flash, True)
    start = flash.ops
    acked, attempted, bounds = _run(flash, calls)
    _umount()
    end = flash.ops
    assert acked == attempted and _verify(flash, acked, bounds) is None
    assert max(flash.block_erases[FS_BLOCKS:]) >= 2  # the journal went round the ring
    failures = []
    checks = 0
    for k in range(start, end):
        for mode in flashsweep.MODES:  # blockdev's, and an erase cut at its end, and a scattered page
            flash = flashsweep.WatchedFlash(SECTOR, FS_BLOCKS + REGION_SECTORS)
            flash.prog = 256  # as the region and LittleFS here program
            _mount(flash, True)
            flash.mode = mode
            flash.after_cut = "lost"
            flash.cut_at = k
            acked, attempted, bounds = _run(flash, calls)
            _umount()
            checks += 1
            problem = _verify(flash, acked, bounds)
            if problem is not None:
                failures.append("cut_at=%d mode=%s: %s" % (k, mode, problem))
    print("ministate on a region: %d ops, %d checks, %d failed" % (end - start, checks, len(failures)))
    assert not failures, "\n".join(failures[:10])
