# miniqueue with its journal on a raw flash region (miniflashlog, FORMAT.md 6.5).
# Runs under pytest on CPython and tests/mp/runner.py on the MicroPython unix port.
# The queue's directory only holds its lock, so the power-cut sweep (on the region's
# flash) runs on both runtimes, once each ("host" and "posix").
import os

try:
    import blockdev
except ImportError:  # CPython: pytest puts tests/core on the path, not tests/mp
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mp"))
    import blockdev

import support
from support import scratch
import flashsweep
import minishim
import miniflash
from miniqueue import MiniQueue

SECTOR = 4096


def body(i, pad=40):
    return {"i": i, "pad": "m" * pad}


def test_a_queue_on_a_region_goes_round_the_ring_and_reopens():
    d = scratch()
    flash = blockdev.RAMFlash(SECTOR, 6)
    q = MiniQueue.open(d, max_bytes=3000, region=flash)
    live = []
    for i in range(2000):
        q.put(body(i))
        live.append(i)
        if len(live) > 15:  # a 1-sector checkpoint: the most a region of 6 keeps room for (FORMAT.md 6.5)
            mid, msg = q.get()
            assert msg == body(live.pop(0))
            q.ack(mid)
    mid, msg = q.get()  # in flight at the restart: delivered again, first
    assert 0 < q.disk_bytes() <= 6 * SECTOR
    q.close()
    assert max(flash.block_erases) - min(flash.block_erases) <= 1 and min(flash.block_erases) >= 5
    q = MiniQueue.open(d, max_bytes=3000, region=flash)
    assert len(q) == len(live) and q.deliveries(mid) == 1
    got = []
    while len(q):
        mid, msg = q.get()
        got.append(msg["i"])
        q.ack(mid)
    assert got == live
    q.close()
    assert len(MiniQueue.inspect(d, region=flash)) == 0


def _first_checkpoint_is_partial(flash):
    """Whether the region's oldest sector begins inside a checkpoint."""
    reader = miniflash.FlashReader(flash)
    entries = 0
    for seq, event in reader:
        if "ckpt" in event:
            entries += 1
        elif "ckpt_end" in event:
            return event["ckpt_end"]["messages"] > entries
        else:
            return False
    return False


def test_a_region_whose_oldest_sector_begins_inside_a_checkpoint():
    # At most 36 messages of 100 bytes: a checkpoint of 2 sectors, the most a region of 8
    # keeps room for ((sectors - 4) // 2, FORMAT.md 6.5). Before 2026-12-05 this test kept
    # 52, a checkpoint of 3 sectors, in 6: such a queue could fill the region for good.
    d = scratch()
    flash = blockdev.RAMFlash(SECTOR, 8)
    q = MiniQueue.open(d, max_bytes=8000, compact_bytes=2500, region=flash)
    live = []
    partial = 0
    n = 0
    for rounds in range(40):
        for _ in range(12):
            q.put(body(n, 90))
            live.append(n)
            n += 1
        while len(live) > 24:
            mid, msg = q.get()
            assert msg["i"] == live.pop(0)
            q.ack(mid)
        q.close()
        partial += _first_checkpoint_is_partial(flash)
        q = MiniQueue.open(d, max_bytes=8000, compact_bytes=2500, region=flash)
        assert len(q) == len(live)
    q.close()
    assert partial > 0, "the test never made the case it is about"


# ---------------------------------------------------------------- power cuts

def _workload(long):
    steps = []
    for i in range(90 if long else 36):
        steps.append(("put", i))
        if i % 3 == 2:
            steps.append(("take", 2 if i < 36 else 3))
        if i == 20:
            steps.append(("reopen", 0))
    return steps


def _open(flash):
    region = miniflash.Region(flash, prog=256)
    return MiniQueue.open(_DIR[0], max_bytes=4000, compact_bytes=1500, region=region)


_DIR = [None]
# 10 sectors of 2 KiB: room for a 3-sector checkpoint ((sectors - 4) // 2, FORMAT.md 6.5) of the
# workload's live messages, and the journal goes round the ring (5 of 4 KiB before 2026-12-05).
SWEPT = (2048, 10)


def _durable_acks(pending, durable_seq, ack_acked):
    """Move the acks up to durable_seq (None: all of them) from `pending` to `ack_acked`."""
    for item in list(pending):
        if durable_seq is None or item[1] <= durable_seq:
            ack_acked.add(item[0])
            pending.remove(item)


def _run(flash, steps):
    """Returns (puts acknowledged, acks acknowledged, puts attempted, error)."""
    put_acked, ack_acked, attempted, ack_tried = set(), set(), set(), set()
    pending = []  # (message, seq of its ack) of acks returned but not yet durable
    q = None
    error = None
    try:
        q = _open(flash)
        for kind, arg in steps:
            if kind == "put":
                attempted.add(arg)
                q.put(body(arg, 150))
                if not flash.dead:
                    put_acked.add(arg)
            elif kind == "take":
                for _ in range(arg):
                    item = q.get()
                    if item is None:
                        break
                    ack_tried.add(item[1]["i"])  # an ack the cut stops may still have landed whole
                    q.ack(item[0])
                    if not flash.dead:
                        pending.append((item[1]["i"], q.seq))
            else:
                q.close()
                if not flash.dead:
                    _durable_acks(pending, None, ack_acked)
                q = _open(flash)
            if not flash.dead:
                # An ack is durable (so must never come back) once the journal is synced past
                # it: the next put, sync or close (durability="puts", FORMAT.md 5.2).
                _durable_acks(pending, q._log.durable_seq, ack_acked)
        q.close()
        if not flash.dead:
            _durable_acks(pending, None, ack_acked)
    except OSError:
        pass
    except Exception as exc:
        error = exc
    if q is not None and q._log is not None:
        q._log.store._abandon()
        q._log.lock.release()
    for key in list(minishim._held):
        del minishim._held[key]
    return put_acked, (ack_acked, ack_tried), attempted, error


def _verify(flash, put_acked, acks, attempted):
    ack_acked, ack_tried = acks
    image = flash.copy()
    q = None
    try:
        q = _open(image)
        got = []
        while len(q):
            mid, msg = q.get()
            got.append(msg["i"])
            q.ack(mid)
        q.close()
        q = None
        if got != sorted(got) or not set(got) <= attempted:
            return "not FIFO, or not attempted: %r" % (got,)
        if set(got) & ack_acked:
            return "acknowledged acks came back: %r" % (sorted(set(got) & ack_acked),)
        missing = put_acked - ack_tried - set(got)
        if missing:
            return "acknowledged puts lost: %r" % (sorted(missing),)
        if len(MiniQueue.inspect(_DIR[0], region=image)) != 0:
            return "not empty after every message was acked"
    except Exception as exc:
        return "recovery failed: %r" % (exc,)
    finally:
        if q is not None and q._log is not None:
            q._log.store._abandon()
            q._log.lock.release()
        for key in list(minishim._held):
            del minishim._held[key]
    return None


def test_queue_on_a_region_power_cut_at_every_program_and_erase():
    if support.FS not in ("host", "posix"):
        return  # the region is on its own flash: once per runtime is enough
    _DIR[0] = scratch()
    long = os.getenv("MINI_TORTURE") == "long"
    steps = _workload(long)
    flash = flashsweep.WatchedFlash(*SWEPT)
    put_acked, ack_acked, attempted, error = _run(flash, steps)
    assert error is None and put_acked == attempted and flash.violations == 0
    assert _verify(flash, put_acked, ack_acked, attempted) is None
    assert max(flash.block_erases) >= 2  # the journal went round the ring
    total = flash.ops
    failures = []
    for k in range(total):
        for mode in flashsweep.MODES:
            flash = flashsweep.WatchedFlash(*SWEPT)
            flash.mode = mode
            flash.after_cut = "lost"
            flash.cut_at = k
            put_acked, ack_acked, attempted, error = _run(flash, steps)
            if error is not None and mode != "drop":
                problem = "workload raised %r" % (error,)
            else:
                problem = _verify(flash, put_acked, ack_acked, attempted)
            if problem is not None:
                failures.append("cut_at=%d mode=%s: %s" % (k, mode, problem))
    print("miniqueue on a region: %d ops, %d checks, %d failed" % (total, total * len(flashsweep.MODES),
                                                                   len(failures)))
    assert not failures, "\n".join(failures[:10])


def test_a_checkpoint_always_fits_a_sector_and_a_message_it_could_not_hold_is_refused_first():
    # From a review: checkpoint batches of "about 2 KiB" did not fit a 2 KiB sector
    # (2048 - 192), so the first compaction of 30 ordinary messages failed, and a message
    # too long for a checkpoint line was accepted, then made every compaction fail.
    d = scratch()
    q = MiniQueue.open(d, max_bytes=4000, region=blockdev.RAMFlash(2048, 16))
    for i in range(30):
        q.put(body(i, 60))
    q.compact()
    assert [q.get()[1] for _ in range(30)] == [body(i, 60) for i in range(30)]
    q.close()
    d = scratch()  # 2 KiB sectors: short enough messages for a 128 KB board's heap
    q = MiniQueue.open(d, max_bytes=8000, region=blockdev.RAMFlash(2048, 10))  # room for 3 sectors of checkpoint
    q.put("small")
    support.raises(ValueError, q.put, "x" * 1800)  # its checkpoint line would not fit in a sector
    mid = q.put("x" * 1700)  # one that fits goes in, and is checkpointed
    assert q.compact() == 2 and mid == 2  # the refused one took no id
    assert q.get() == (1, "small") and q.get() == (mid, "x" * 1700)
    q.close()
    d = scratch()  # two messages that one 2 KiB sector cannot hold together
    q = MiniQueue.open(d, max_bytes=8000, region=blockdev.RAMFlash(2048, 8))
    ids = [q.put("y" * 900), q.put("z" * 900)]
    assert q.compact() == 2
    assert q.get() == (ids[0], "y" * 900) and q.get() == (ids[1], "z" * 900)
    q.close()


def test_a_batch_a_sector_cannot_hold_is_refused_and_the_queue_goes_on():
    # From a review: put_many of messages that fit one by one but not together in a sector
    # reached the region's write, whose ValueError closed the queue, as a failed write does.
    d = scratch()
    flash = blockdev.RAMFlash(SECTOR, 8)
    q = MiniQueue.open(d, max_bytes=20000, region=flash)
    first = q.put("before")
    err = support.raises(ValueError, q.put_many, ["b" * 200] * 20)
    assert "do not fit in one sector" in str(err)
    assert not q.closed and len(q) == 1
    ids = q.put_many(["b" * 200] * 10)  # one that fits; the refused one took no ids
    assert ids == list(range(first + 1, first + 11))
    q.close()
    q = MiniQueue.open(d, max_bytes=20000, region=flash)
    assert [q.get()[1] for _ in range(11)] == ["before"] + ["b" * 200] * 10
    q.close()


def test_the_largest_message_a_put_takes_is_checkpointed_with_long_seqs():
    # From a review: put() took messages up to sector - 192 - 64 bytes, but a checkpoint
    # line is 57 bytes plus the digits of its seq, id, batch and delivery count around
    # its message: once seqs had 8 digits (10 million events) such a message's line no
    # longer fit a sector, every compaction failed and closed the queue, and the region
    # filled for good. The bound is 128 bytes a line now (FORMAT.md 6.5).
    flash = blockdev.RAMFlash(2048, 8)
    with miniflash.FlashStore.open(flash, base_seq=10 ** 15) as store:  # a queue that ran long
        store.append({"ckpt_end": {"messages": 0, "dropped": 0}})
    d = scratch()
    q = MiniQueue.open(d, max_bytes=8000, region=flash)
    room = 2048 - 192 - 128
    support.raises(ValueError, q.put, "x" * (room - 1))  # its JSON is room + 1 bytes
    big = q.put("x" * (room - 2))
    assert q.get() == (big, "x" * (room - 2))
    q.nack(big)
    assert q.compact() == 1
    q.close()
    q = MiniQueue.open(d, max_bytes=8000, region=flash)
    assert q.get() == (big, "x" * (room - 2)) and q.deliveries(big) == 2
    q.ack(big)
    q.compact()
    q.close()


def test_a_power_cut_in_a_put_at_every_boot_does_not_fill_the_region():
    # From a review: each cut tears the head sector and costs the rest of it; with one put
    # a boot no compaction came due, nothing was released, and after 6 boots put, get,
    # ack and compact() all raised RegionFull on every boot, the region unusable.
    d = scratch()
    flash = blockdev.RAMFlash(SECTOR, 6)
    acked = []
    for boot in range(14):
        flash.cut_at, flash.mode, flash.dead = -1, "torn", False
        q = MiniQueue.open(d, max_bytes=3000, region=flash)
        acked.append(q.put({"boot": boot}))
        flash.cut_at = flash.ops  # the power goes in the next put's program
        support.raises(OSError, q.put, {"boot": boot, "cut": True})
        q._close_quietly()  # the power is off: nothing more is written
    flash.cut_at, flash.dead = -1, False
    q = MiniQueue.open(d, max_bytes=3000, region=flash)
    got = []
    while len(q):
        mid, message = q.get()
        got.append(mid)
        q.ack(mid)
    assert [mid for mid in got if mid in acked] == acked  # every acknowledged put, in order
    q.put("after")
    q.close()
