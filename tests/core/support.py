# Helpers shared by the core tests on both runtimes. On CPython pytest imports
# them; on MicroPython tests/mp/runner.py does, after setting ROOT to the
# mounted filesystem under test.
import os
import sys

MICROPYTHON = sys.implementation.name == "micropython"
ROOT = None  # MicroPython runner: mount point of the filesystem under test
FS = "host"  # which filesystem the tests run on ("host", "posix", "lfs2-esp32", ...)
# A single-precision build (ESP32, RP2040, tools/firmware.py unix-f32 and microbit-*):
# 1e300 overflows to inf there. Tests that need floats outside the float32 range
# use FLOATS, the same kinds of values (tiny, huge, -0.0, thirds) at either precision.
FLOAT32 = float("1e300") == float("inf")
if FLOAT32:
    FLOATS = [0.1, -2.5e-38, 1e38, 1.0, -0.0, 3.1415927, 1 / 3]
else:
    FLOATS = [0.1, -2.5e-308, 1e300, 1.0, -0.0, 3.141592653589793, 1 / 3]
_count = [0]


def scratch():
    """A new, empty directory for one test."""
    if ROOT is None:
        import tempfile
        return tempfile.mkdtemp(prefix="mini-")
    _count[0] += 1
    path = "%s/t%d" % (ROOT, _count[0])
    os.mkdir(path)
    return path


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and return the exception it raises; fail if it raises nothing or something else."""
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        return exc
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), exc_type.__name__))


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def write_bytes(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)


def append_bytes(path, data):
    write_bytes(path, data, "ab")


def size(path):
    return os.stat(path)[6]


def lines(path):
    return read_bytes(path).split(b"\n")[:-1]


def appender(store, per_thread, pad=None, sync_every=None):
    """A run_threads target: thread t appends 40 records to `store`, every 10th an atomic
    batch of 3 ([t, i, 0..2]), the others [t, i] (or [t, i, pad]); it keeps the seqs it
    got in per_thread[t] (one list per thread: MicroPython's unix port and RP2040 run
    threads with no GIL, so a list shared between them would need a lock of its own).
    sync_every: also sync() after every that-many-th append."""
    def writer(t):
        seqs = per_thread[t]
        for i in range(40):
            if i % 10 == 9:
                last = store.append_many([[t, i, 0], [t, i, 1], [t, i, 2]])
                seqs.extend([last - 2, last - 1, last])
            else:
                seqs.append(store.append([t, i] if pad is None else [t, i, pad]))
            if sync_every is not None and i % sync_every == 0:
                store.sync()
    return writer


THREADS_DEADLINE = 120  # seconds: the tests take under 1 s on CPython, a few on the unix port


def run_threads(target, count):
    """Run target(0) .. target(count - 1) in `count` threads at once; re-raise the first error.

    CPython threading, or MicroPython _thread (the unix port, ESP32 and RP2040 have it)."""
    errors = []
    if not MICROPYTHON:
        import threading

        def guarded(i):
            try:
                target(i)
            except BaseException as exc:  # noqa: B902 (re-raised in the caller's thread)
                errors.append(exc)
        # Daemons, joined with a deadline: a wake-up the group commit never sends fails
        # the test (and the run goes on) instead of hanging the suite.
        threads = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(THREADS_DEADLINE)
        stuck = [i for i, t in enumerate(threads) if t.is_alive()]
        assert not stuck, "threads %s still running after %d s: a wait that never ends" % (stuck, THREADS_DEADLINE)
    else:
        import _thread
        import time
        lock = _thread.allocate_lock()
        done = [0]

        def guarded(i):
            try:
                target(i)
            except Exception as exc:
                with lock:  # no GIL on the unix port or RP2040: shared lists need the lock
                    errors.append(exc)
            with lock:
                done[0] += 1
        for i in range(count):
            _thread.start_new_thread(guarded, (i,))
        waited = 0
        while done[0] < count:
            time.sleep_ms(2)  # pyright: ignore[reportAttributeAccessIssue] (MicroPython's time)
            waited += 2
            assert waited < THREADS_DEADLINE * 1000, "%d threads still running after %d s" % (
                count - done[0], THREADS_DEADLINE)
    if errors:
        raise errors[0]


def has_threads():
    try:
        import _thread  # noqa: F401
        return True
    except ImportError:
        return False


def float32_values(n, seed=1):
    """n finite floats from pseudo-random float32 bit patterns (normals and subnormals),
    the same on every runtime: what a single-precision board can hold."""
    import struct
    out = []
    x = seed
    while len(out) < n:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        bits = ((x >> 16) << 16) | ((x * 69069 + 1) & 0xFFFF)
        if (bits >> 23) & 0xFF == 0xFF:
            continue  # inf or nan
        out.append(struct.unpack("<f", struct.pack("<I", bits))[0])
    return out


def is_subnormal32(value):
    return value != 0.0 and -1.1754944e-38 < value < 1.1754944e-38


class Rng:
    """A small seeded generator (MicroPython's random has no Random class)."""

    def __init__(self, seed):
        self.state = seed * 2654435761 % 2 ** 32 or 1

    def _next(self):
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x

    def random(self):
        return self._next() / 2 ** 32

    def randint(self, a, b):
        return a + self._next() % (b - a + 1)

    def choice(self, items):
        return items[self._next() % len(items)]

    def below(self, n):
        return self._next() % n


def fails_once(owner, name, exc):
    """Make owner.<name> raise exc at its next call, then be itself again: an error in
    the middle of a brick's call, forced where it hurts."""
    real = getattr(owner, name)

    def failing(*args, **kwargs):
        setattr(owner, name, real)
        raise exc
    setattr(owner, name, failing)
    return real

