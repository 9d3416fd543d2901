"""minishim: the one place where CPython and MicroPython differ.

Every other core module imports its json, os, crc, locking and durability
primitives from here, so that the bricks themselves run unchanged on both runtimes.
"""
import sys

try:
    import os
except ImportError:  # very old ports only ship uos, as some ship only ujson
    import uos as os  # pyright: ignore[reportMissingImports] (not in CPython or the stubs)

MICROPYTHON = sys.implementation.name == "micropython"

try:
    import json
except ImportError:  # very old ports only ship ujson
    import ujson as json  # pyright: ignore[reportMissingImports] (not in CPython or the stubs)

try:
    from binascii import crc32
except ImportError:
    from zlib import crc32

if MICROPYTHON:
    import errno
    finalize = None  # no weakref: a writer dropped without close() keeps its path held (README)
else:
    import errno
    import fcntl  # pyright: ignore[reportMissingImports] (stub gap: the boards have no fcntl)
    from weakref import finalize

    # fdatasync where the OS has it (Linux); the board stubs declare neither.
    _datasync = getattr(os, "fdatasync", None) or os.fsync  # pyright: ignore[reportAttributeAccessIssue]

try:
    from _thread import allocate_lock  # pyright: ignore[reportAssignmentType] (the fallback below is the declared type)
except ImportError:  # a port built without threads: nothing to lock against, and nothing to pay
    class _NoLock:
        def __enter__(self):
            return True

        def __exit__(self, *exc):
            return False

        def acquire(self, *args):
            return True

        def release(self):
            pass

    _NO_LOCK = _NoLock()

    def allocate_lock():  # one name, two kinds of port
        return _NO_LOCK

ENOENT = errno.ENOENT
EEXIST = errno.EEXIST
EISDIR = getattr(errno, "EISDIR", 21)


if MICROPYTHON:
    def dumps(obj):
        """Compact JSON text. MicroPython writes non-ASCII as UTF-8, so CPython does too."""
        return json.dumps(obj, separators=(",", ":"))

    scan_json = None
else:
    # Built once: json.dumps with keyword arguments builds a new JSONEncoder on every call,
    # and JSONEncoder.encode builds a C encoder on every call: built once here with the
    # arguments it passes (1.2 us a record, not 1.8). No circular check (markers None, so
    # nothing is shared between threads): the bricks run check_value first, whose depth
    # limit refuses a cycle. Without the C accelerator (PyPy), JSONEncoder.encode.
    _json_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    _c_make_encoder = getattr(getattr(json, "encoder", None), "c_make_encoder", None)
    _encode_chunks = None if _c_make_encoder is None else _c_make_encoder(
        None, _json_encoder.default, json.encoder.encode_basestring,  # pyright: ignore[reportAttributeAccessIssue]
        None, ":", ",", False, False, False)

    def _dumps_c(obj):
        """Compact JSON text, as MicroPython's (non-ASCII as UTF-8); NaN and inf refused."""
        return "".join(_encode_chunks(obj, 0))  # pyright: ignore[reportOptionalCall] (chosen only when built)

    dumps = (_json_encoder.encode  # pyright: ignore[reportAssignmentType] (one name, two runtimes)
             if _encode_chunks is None else _dumps_c)

    def _not_json(name):
        # CPython alone reads NaN and Infinity; MicroPython refuses them, and so must
        # every reader here, or one file would read differently on the two runtimes.
        raise ValueError("%s is not JSON" % name)

    _decoder = json.JSONDecoder(parse_constant=_not_json)
    # scan_json(text, index) -> (value, end index); raises StopIteration or ValueError.
    # It is what JSONDecoder.raw_decode calls, minus a Python frame.
    scan_json = _decoder.scan_once  # pyright: ignore[reportAttributeAccessIssue] (CPython's C scanner)


def loads_between(line, start, stop):
    """The JSON value that fills line[start:stop] exactly (ValueError if it does not).

    line[:start] and line[stop:] must be ASCII. Decodes as json.loads does bytes.
    """
    if scan_json is None:  # MicroPython: no scanner to call, and slicing is cheap there
        return loads(line[start:stop])
    text = line.decode("utf-8", "surrogatepass")
    try:
        value, end = scan_json(text, start)
    except StopIteration:
        raise ValueError("no JSON value")
    if end != len(text) - (len(line) - stop):
        raise ValueError("extra data")
    return value


if MICROPYTHON:
    loads = json.loads  # pyright: ignore[reportAssignmentType] (one name, two runtimes)
else:
    def loads(data):
        """json.loads, refusing NaN and Infinity as MicroPython does."""
        if not isinstance(data, str):
            data = str(data, "utf-8", "surrogatepass")  # bytes, bytearray or memoryview, decoded at once
        # The scanner alone, when the value fills the text (what the bricks write): decode()
        # adds two Python frames and two regex matches. Anything else, an error included,
        # goes through decode(), which gives the same value or raises as json.loads does.
        try:
            value, end = scan_json(data, 0)  # pyright: ignore[reportOptionalCall] (CPython: always set)
            if end == len(data):
                return value
        except (StopIteration, ValueError):
            pass
        return _decoder.decode(data)


def is_missing(exc):
    """True if an OSError means "no such file or directory" (MicroPython has no FileNotFoundError)."""
    return isinstance(exc, OSError) and exc.args and exc.args[0] == ENOENT


def file_size(path):
    """Size in bytes, or None if the path does not exist."""
    try:
        return os.stat(path)[6]
    except OSError as exc:
        if is_missing(exc):
            return None
        raise


def is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError as exc:
        if is_missing(exc):
            return False
        raise


def join(*parts):
    out = ""
    for part in parts:
        if not out or part.startswith("/"):
            out = part
        elif out.endswith("/"):
            out += part
        else:
            out += "/" + part
    return out


def fspath(path):
    """A str path from a str or a path-like object (pathlib.Path on CPython); anything
    else is handed back as it is, for the caller to judge."""
    if path.__class__ is str:
        return path
    to_str = getattr(path, "__fspath__", None)
    if to_str is not None:
        return to_str()
    if path is None or path.__class__ is int:  # not a path: CPython's join() went on without it (the cwd)
        raise TypeError("a path is a str or path-like object, not %r" % (path,))
    return path


def normpath(path):
    """`path` as one absolute spelling: "a/j", "./a/j" and "/cwd/a//j" name one file."""
    if not path.startswith("/"):
        path = join(os.getcwd(), path)
    parts = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def dirname(path):
    cut = path.rfind("/")
    if cut < 0:
        return ""
    if cut == 0:
        return "/"
    return path[:cut]


def basename(path):
    return path[path.rfind("/") + 1:]


def makedirs(path):
    """Create path and its missing parents; an existing directory is fine."""
    if not path or path == "/" or is_dir(path):
        return
    makedirs(dirname(path))
    try:
        os.mkdir(path)
    except OSError as exc:
        if exc.args[0] != EEXIST:
            raise
    sync_dir(dirname(path) or ".")


def littlefs_block(path):
    """The block size of the LittleFS (v2) that holds `path`, or None: CPython, FAT, the
    posix VFS, or a port whose vfs module cannot list its mounts."""
    if not MICROPYTHON:
        return None
    try:
        import vfs  # pyright: ignore[reportMissingImports] (MicroPython 1.23+)
        mounts = vfs.mount()
    except Exception:
        return None
    full = normpath(path)
    found = None
    for fs, point in mounts:
        if full == point or full.startswith(point.rstrip("/") + "/"):
            if found is None or len(point) > len(found[1]):
                found = (fs, point)
    if found is None or type(found[0]).__name__ != "VfsLfs2":
        return None
    return os.statvfs(found[1])[0]  # pyright: ignore[reportAttributeAccessIssue] (stub gap)


def _ones(n):
    count = 0
    while n:
        count += n & 1
        n >>= 1
    return count


def littlefs_left(size, block):
    """Bytes left in the block that holds byte `size` of a LittleFS file: a file is a
    CTZ skip-list whose block i > 0 starts with ctz(i) + 1 pointers of 4 bytes (littlefs
    SPEC.md, "CTZ skip-lists"; the arithmetic of lfs_ctz_index)."""
    per = block - 8
    index = size // per
    if index == 0:
        return block - size
    index = (size - 4 * (_ones(index - 1) + 2)) // per
    return block - (size - per * index - 4 * _ones(index))


listdir = os.listdir
remove = os.remove
rename = os.rename


def numbered_files(directory, prefix, suffix):
    """Sorted [(number, path)] of files named prefix + 8 digits + suffix."""
    out = []
    try:
        names = listdir(directory)
    except OSError as exc:
        if is_missing(exc):
            return out
        raise
    for name in names:
        middle = name[len(prefix):len(name) - len(suffix)]
        if name.startswith(prefix) and name.endswith(suffix) and len(middle) == 8 and middle.isdigit():
            out.append((int(middle), join(directory, name)))
    out.sort()
    return out


def sync_dir(path):
    """Make a create, remove or rename in `path` durable.

    POSIX only promises a new directory entry survives a crash after an fsync
    of the directory. MicroPython's filesystems commit metadata with the file
    sync, so there is nothing to do there.
    """
    if MICROPYTHON:
        return
    fd = os.open(path or ".", os.O_RDONLY)  # pyright: ignore[reportAttributeAccessIssue] (stub gap)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(path, data):
    """Create `path` (it must not exist) holding `data` (bytes, or a list of bytes written one
    after another), durable before this returns."""
    if file_size(path) is not None:
        raise OSError(EEXIST, path)
    with open(path, "wb") as f:
        for piece in data if isinstance(data, list) else (data,):
            f.write(piece)
        f.flush()  # the sync on MicroPython
        if not MICROPYTHON:
            os.fsync(f.fileno())
    sync_dir(dirname(path) or ".")


def remove_durably(path):
    remove(path)
    sync_dir(dirname(path) or ".")


def rename_durably(src, dst):
    """Rename src to dst. Callers must never rename over an existing file (FAT does that as remove+rename)."""
    rename(src, dst)
    sync_dir(dirname(dst) or ".")


# Paths opened for writing by this process, by normpath(), each to its holder's [key,
# fd] (miniflash's regions: to their opener's [key]). A second writer in the same
# process is refused on both runtimes; on CPython an flock also refuses writers in other
# processes (it is released when the process dies, even by SIGKILL).
_held = {}
# Two threads opening one path at once: one of them wins. Reentrant on CPython, where
# a finalizer (_release) can run inside the lock when the collector runs there.
_held_lock = allocate_lock() if MICROPYTHON else __import__("threading").RLock()
# MicroPython files whose close() failed (the device errored). If the collector
# finalized one later, its close would commit stale data over whatever a reopened
# writer wrote since; holding it here means it is never finalized.
_unclosable = []


class Locked(Exception):
    """Another writer holds the file."""


def _acquire(path, held):
    """Hold `path` for this process; on CPython also flock it. `held` is the caller's
    [key, fd], filled as each is taken: a KeyboardInterrupt can land between any two
    bytecodes, and _release(held) then undoes what was taken. On MicroPython the key is
    the path's text, lower-cased: FAT ignores case, so "/fat/state" and "/fat/STATE" are
    one directory (on LittleFS, two that differ only in case are then refused as one:
    the safe side)."""
    key = normpath(path).lower() if MICROPYTHON else normpath(path)
    with _held_lock:
        if key in _held:
            raise Locked()
        held[0] = key  # before the entry: _release pops only an entry that is `held`
        _held[key] = held
    if MICROPYTHON:
        return
    # Stored before it is locked: an interrupt between the open and the store leaks an
    # fd that holds no lock, never a lock.
    held[1] = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # pyright: ignore[reportAttributeAccessIssue] (stub gap)
    try:
        fcntl.flock(held[1], fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except OSError:
        pass  # raised below, outside this handler: a LockedError needs no chained BlockingIOError
    _release(held)
    raise Locked()


def _release(held):
    """Undo _acquire (what it took of it). On CPython it also runs when a writer is
    collected unclosed: it never writes. Twice is harmless."""
    fd = held[1]
    held[1] = None
    if fd is not None:
        os.close(fd)  # closing releases the flock
    with _held_lock:  # no GIL on some ports: the registry changes only under its lock
        if _held.get(held[0]) is held:
            del _held[held[0]]


class _Holder:
    """Holds a path from _acquire() until release(), or until it is collected (CPython)."""

    def __init__(self, path):
        held = self._held = [None, None]  # [key, fd]: _acquire fills it as it takes them
        self._finalizer = None if finalize is None else finalize(self, _release, held)
        try:
            _acquire(path, held)
        except BaseException:  # Locked, an OSError, or a KeyboardInterrupt halfway
            _release(held)
            raise
        self._fd = held[1]

    def _let_go(self):
        """Release the path; False if it was released already."""
        if self._fd is None and self._held[0] is None:
            return False
        if self._finalizer is not None:
            self._finalizer()  # runs _release once, and never again at collection
        else:
            _release(self._held)
        self._held[0] = None
        self._fd = None
        return True


class DirLock(_Holder):
    """An exclusive lock on a directory of segments, held while a brick has it open.

    On CPython it is an flock on DIR/.lock (released by the kernel when the process
    dies); on MicroPython, one interpreter is the only writer, so the registry is enough.
    """

    def __init__(self, directory):
        _Holder.__init__(self, join(directory, ".lock"))

    def release(self):
        self._let_go()


class JournalFile(_Holder):
    """The writer's handle on an append-only file: locked, then recovered, then appended to."""

    def __init__(self, path):
        _Holder.__init__(self, path)
        self.path = path
        self._f = None

    def overwrite(self, offset, pieces):
        """Write the byte strings `pieces` one after another from `offset` (possibly past
        the end) and make them durable. Returns how many bytes were written."""
        written = 0
        if self._fd is not None:
            os.lseek(self._fd, offset, 0)
            for piece in pieces:
                self.write(piece)
                written += len(piece)
            self.sync()
            return written
        with open(self.path, "r+b") as f:
            f.seek(offset)
            for piece in pieces:
                f.write(piece)
                written += len(piece)
            f.flush()
        return written

    def reopen(self):
        """Close and open again the file start_appending() opened (MicroPython). If the
        open fails, the next write() opens it (everything written so far is synced)."""
        f, self._f = self._f, None
        if f is not None:
            f.close()
            # Unreferenced before the open: a collection can then give its heap block (on
            # LittleFS, the file's cache) to the new file, on a heap with no other as large.
            f = None
            self._f = open(self.path, "ab")

    def start_appending(self):
        if self._fd is not None:
            os.lseek(self._fd, 0, 2)
        else:
            self._f = open(self.path, "ab")

    def write(self, data):
        if self._fd is None:
            # start_appending() opened _f, and MiniStore never writes after close().
            if self._f is None:  # a reopen after a sync failed (sync())
                self._f = open(self.path, "ab")
            self._f.write(data)
            return
        # os.write may write less than asked; loop until all of it is written.
        done = os.write(self._fd, data)
        if done < len(data):
            view = memoryview(data)[done:]
            while view:
                view = view[os.write(self._fd, view):]

    reopen_every = 0  # on LittleFS: reopen after that many syncs (MiniStore.refresh)
    _syncs = 0

    if MICROPYTHON:
        def sync(self):
            f = self._f
            if f is None:  # a reopen failed after the last sync: nothing written since
                return
            # flush() is lfs_file_sync on LittleFS, f_sync on FAT and fsync on posix.
            f.flush()
            if self.reopen_every:
                self._syncs += 1
                if self._syncs >= self.reopen_every:
                    self._syncs = 0
                    f = None  # see reopen()
                    try:
                        self.reopen()
                    except (OSError, MemoryError):
                        # The sync is done: what it covers is durable. The next write
                        # opens the file again, and raises if it cannot.
                        pass
    else:
        def sync(self):
            # fdatasync also writes the file size, which is all an append changes.
            _datasync(self._fd)  # pyright: ignore[reportArgumentType] (on CPython _acquire always gives an fd)

    def close(self):
        f, self._f = self._f, None
        if not self._let_go():
            return
        if f is not None:
            try:
                f.close()
            except OSError:
                _unclosable.append(f)
                raise


# A monotonic clock in milliseconds, for delays and timeouts. MicroPython's ticks_ms
# wraps (at 2**30 on most ports): compare only through ticks_diff, which is right for
# two ticks less than 2**29 ms (6.2 days) apart.
MAX_DELAY = 86400  # seconds: the longest wait or delay measured in ticks (one day, within 6.2)
if MICROPYTHON:
    import time as _time  # MicroPython's: the names below are not CPython's
    ticks_ms = _time.ticks_ms  # pyright: ignore[reportAttributeAccessIssue, reportAssignmentType]
    ticks_diff = _time.ticks_diff  # pyright: ignore[reportAttributeAccessIssue, reportAssignmentType]
    ticks_add = _time.ticks_add  # pyright: ignore[reportAttributeAccessIssue, reportAssignmentType]
    sleep_ms = _time.sleep_ms  # pyright: ignore[reportAttributeAccessIssue, reportAssignmentType]
else:
    from time import monotonic as _monotonic, sleep as _sleep  # pyright: ignore[reportAttributeAccessIssue] (CPython's)

    def ticks_ms():
        return int(_monotonic() * 1000)

    def ticks_diff(end, start):
        return end - start

    def ticks_add(ticks, delta):
        return ticks + delta

    def sleep_ms(ms):
        _sleep(ms / 1000)

try:
    import _thread  # noqa: F401 (only asking whether this port has threads)
    THREADS = True
except ImportError:
    THREADS = False


def held_lock():
    """A lock taken at once, for another thread to release: a one-shot wake-up that the
    waiter blocks on (the group commit's followers, a queue's get(timeout))."""
    lock = allocate_lock()
    lock.acquire()
    return lock


def wait_release(lock, ms):
    """Wait up to `ms` milliseconds for another thread to release `lock`, which the caller
    acquired; True if it was released (and is now held again by the caller).

    CPython: a blocking acquire with a timeout, woken at once by the release. MicroPython's
    acquire takes no timeout, so it tries every 1 to 16 ms and sleeps in between (a put
    wakes the waiter within 16 ms). Without threads nothing can release it: it sleeps `ms`."""
    if not MICROPYTHON:
        return lock.acquire(True, max(ms, 0) / 1000)
    if not THREADS:
        sleep_ms(max(ms, 0))
        return False
    deadline = ticks_add(ticks_ms(), ms)
    step = 1
    while True:
        if lock.acquire(0):
            return True
        left = ticks_diff(deadline, ticks_ms())
        if left <= 0:
            return False
        sleep_ms(min(step, left))
        step = min(step * 2, 16)
