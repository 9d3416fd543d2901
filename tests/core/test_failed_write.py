# A write that fails (a flash error) must not hurt later writers in the same
# process. MicroPython only: it needs a block device that can fail on demand.
from support import MICROPYTHON, raises, scratch, fails_once
import minishim
import ministore
from ministore import MiniStore, ClosedError

_mounts = [0]


def _flash(kind):
    import vfs
    import blockdev
    _mounts[0] += 1
    point = "/fw%d" % _mounts[0]
    flash, fs = blockdev.make_fs(kind, "esp32", blocks=64)
    vfs.mount(fs, point)
    return flash, point


def test_failed_write_closes_the_store_and_a_reopen_loses_nothing():
    if not MICROPYTHON:
        return  # covered on CPython by the SIGKILL test; this needs a failing block device
    import gc
    for kind in ("lfs2", "fat"):
        for offset in range(1, 8):
            flash, point = _flash(kind)
            path = point + "/log"
            store = MiniStore.open(path)
            store.append("a")
            stale = store._file._f  # the MicroPython file object that the failure leaves behind
            flash.cut_at = flash.ops + offset  # one transient EIO
            try:
                store.append("b" * 3000)
                store.append("b2" * 3000)
            except OSError:
                assert store.closed
                raises(ClosedError, store.append, "x")
            else:
                store.close()  # the cut fell after these writes
            flash.dead = False
            flash.cut_at = -1
            store = MiniStore.open(path)
            seq = store.append("c")
            store.close()
            before = MiniStore.replay(path)
            # What the collector's finalizer would do (on a board with a C flash
            # driver it can; here a Python block device cannot run inside the GC):
            # close the old handle, unless the shim keeps it from being finalized.
            if stale not in minishim._unclosable:
                stale.close()
            gc.collect()
            after = MiniStore.replay(path)
            assert after == before, (kind, offset, before, after)
            assert after[0] == "a" and after[-1] == "c" and len(after) == seq, (kind, offset, after)
            import vfs
            vfs.umount(point)


def test_a_write_that_raises_anything_closes_the_store_and_leaves_no_gap():
    # Not only an OSError: a MemoryError on a board, or a KeyboardInterrupt. An append's
    # line is left to the sync its thread leads, with its seq counted; a store that went
    # on after it was not written would write the next line after a gap in the seqs,
    # and the journal would not open (before: only an OSError closed the store).
    path = scratch() + "/j.jsonl"
    store = MiniStore.open(path)
    store.append("before")
    fails_once(store._file, "write", MemoryError("test: no heap in the write"))
    raises(MemoryError, store.append, "not written")
    assert store.closed
    raises(ClosedError, store.append, "after")
    with MiniStore.open(path) as again:
        assert again.append("reopened") == 2
    assert list(MiniStore.stream(path)) == [(1, "before"), (2, "reopened")]


def test_a_failure_while_the_lines_are_joined_closes_the_store_too():
    # The lines left to a sync are taken, then joined into one write: a MemoryError there
    # (a board's heap) must not drop them while their seqs stay counted.
    path = scratch() + "/j.jsonl"
    store = MiniStore.open(path)
    store.append("before")
    real = fails_once(ministore, "_joined", MemoryError("test: no heap to join the lines"))
    try:
        raises(MemoryError, store.append, "not written")
    finally:
        ministore._joined = real
    assert store.closed
    raises(ClosedError, store.append, "after")
    with MiniStore.open(path) as again:
        assert again.append("reopened") == 2
    assert list(MiniStore.stream(path)) == [(1, "before"), (2, "reopened")]
