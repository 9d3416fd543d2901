# A write that fails (a flash error) must not hurt later writers in the same
# process. MicroPython only: it needs a block device that can fail on demand.
from support import MICROPYTHON, raises
import minishim
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
