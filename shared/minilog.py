"""minilog: a journal in segments, each a ministore journal, that a brick compacts
from the front. On-disk layout: FORMAT.md, section 4. ministate and miniqueue are
built on it (LogBrick); snapshots are minisnap's, and this module needs none.
"""
# Nothing here ever renames a file: each compaction step is "create a new segment"
# or "remove a segment that is no longer needed", each safe to cut at any point.
import minishim as shim
from ministore import MiniStore, MiniError, ClosedError, check_header, hold, peek_line, read_line

_SEG_PREFIX = "journal-"
_SEG_SUFFIX = ".jsonl"


class CompactionGap(MiniError):
    """The journal and the snapshots do not fit together: records are missing."""


def segment_files(directory):
    """Sorted [(number, path)] of the journal segments in `directory`."""
    return shim.numbered_files(directory, _SEG_PREFIX, _SEG_SUFFIX)


def segment_base(path):
    """base_seq from a journal segment's header, or None if the header is torn."""
    with open(path, "rb") as f:
        return check_header(path, read_line(f), lambda: peek_line(f))


def oldest_base(directory):
    """The base_seq of the oldest segment in `directory`; 0 if there is none or its header is torn."""
    found = segment_files(directory)
    return (segment_base(found[0][1]) or 0) if found else 0


class Segment:
    """One journal segment: its file number, path, and base_seq (the seq before its first record)."""

    def __init__(self, number, path, base_seq):
        self.number = number
        self.path = path
        self.base_seq = base_seq

    def __repr__(self):
        return "Segment(%d, %r, base_seq=%d)" % (self.number, self.path, self.base_seq)


class SegmentedLog:
    """A journal made of segments journal-NNNNNNNN.jsonl in one directory.

    Each segment is a ministore journal whose header base_seq continues the
    previous segment, so sequence numbers never change. roll() starts a new
    segment; compact(seq) removes old segments whose records are all <= seq.
    """

    def __init__(self, directory, sync, segments, store, lock):
        self.lock = lock
        self.directory = directory
        self.sync_policy = sync
        self.segments = segments  # [Segment], oldest first; the last one is open in `store`
        self.store = store

    @staticmethod
    def open(directory, after_seq=0, apply=None, sync: "str | int" = "always", start=None):
        """Open the log; call apply(seq, record) for every record after `after_seq`.

        start: a function that returns `after_seq`, called once the directory is
        locked (instead of passing after_seq): a brick must read its snapshots or
        segments only under the lock, or a writer that is compacting could remove
        them under its feet.
        Raises CompactionGap if records after `after_seq` are missing, or if the
        log ends before `after_seq`.
        """
        directory = shim.fspath(directory)
        shim.makedirs(directory)
        lock = hold(shim.DirLock, directory)
        try:
            if start is not None:
                after_seq = start()
            return SegmentedLog._open_locked(directory, after_seq, apply, sync, lock)
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def _open_locked(directory, after_seq, apply, sync, lock):
        found = segment_files(directory)
        if not found:
            path = shim.join(directory, "%s%08d%s" % (_SEG_PREFIX, 1, _SEG_SUFFIX))
            store = MiniStore.open(path, sync=sync, base_seq=after_seq)
            return SegmentedLog(directory, sync, [Segment(1, path, after_seq)], store, lock)
        segments, last = walk_segments(found, after_seq, apply, read_last=False)

        def replay_last(seq, record):
            if seq > after_seq and apply is not None:
                apply(seq, record)
        store = MiniStore.open(segments[-1].path, sync=sync, base_seq=segments[-1].base_seq, replay=replay_last)
        _check_reaches(after_seq, store.seq, store.close)
        return SegmentedLog(directory, sync, segments, store, lock)

    @property
    def seq(self):
        return self.store.seq

    def append(self, record):
        return self.store.append(record)

    def append_many(self, records):
        return self.store.append_many(records)

    def append_encoded(self, bodies, durable=True, lead=()):
        return self.store.append_encoded(bodies, durable, lead)

    @property
    def durable_seq(self):
        return self.store.durable_seq

    def sync(self):
        self.store.sync()

    def close(self):
        try:
            self.store.close()
        finally:
            self.lock.release()

    def replay(self, after_seq, apply):
        """Read every segment again and call apply(seq, record) for records after `after_seq`."""
        self.store.sync()  # a reader must see everything appended so far
        for segment in self.segments:
            _replay_segment(MiniStore.stream(segment.path), after_seq, apply, segment.base_seq)

    def active_bytes(self):
        return self.store.size

    def roll(self, between=None):
        """Start a new segment after the current seq (the old one is synced and closed).

        between(), if given, runs after the old segment is closed and before the new one
        is created: a file it opens on a board can take the heap block (the LittleFS
        file cache, 1 KB or more) that the old segment's file held, where a heap that the
        app's long-lived objects fragment may have no other block as large."""
        seq = self.store.seq
        self.store.close()
        try:
            if between is not None:
                between()
        finally:
            number = self.segments[-1].number + 1
            path = shim.join(self.directory, "%s%08d%s" % (_SEG_PREFIX, number, _SEG_SUFFIX))
            # Listed before it is opened: a segment the store writes to must be one that
            # replay() reads (a MemoryError after the open left it out, and the records
            # appended there out of a rebuilt state).
            self.segments.append(Segment(number, path, seq))
            try:
                self.store = MiniStore.open(path, sync=self.sync_policy, base_seq=seq)
            except BaseException:
                self.segments.pop()
                raise

    def compact(self, upto_seq):
        """Remove the segments (never the active one) whose records all have seq <= upto_seq."""
        if upto_seq is None:
            return 0
        removed = 0
        # The last removal is not synced on its own: one a crash undoes leaves a segment
        # that replays to the same state (as a crash just before it does), and the next
        # segment's creation syncs the directory. One sync fewer per compaction. But each
        # removal before another is: a crash that kept a later one without it would
        # leave a hole in the chain (CompactionGap at open).
        while len(self.segments) > 1 and self.segments[1].base_seq <= upto_seq:
            if removed:
                shim.sync_dir(self.directory)
            try:
                shim.remove(self.segments[0].path)
            except OSError as exc:
                if not shim.is_missing(exc):
                    raise  # gone already: removed by a compaction that stopped (Ctrl-C) before it was unlisted
            self.segments.pop(0)
            removed += 1
        if removed:
            self.store.refresh()  # pyright: ignore[reportAttributeAccessIssue] (files: a MiniStore; RegionLog has its own compact)
        return removed


def walk_segments(found, after_seq, apply, read_last=True):
    """Check that segments `found` ([(number, path)]) continue each other and reach
    back to `after_seq`; call apply(seq, record) for each record after it.

    Returns ([Segment], last seq read). With read_last=False the
    newest segment is not read (its writer reads it while recovering it).
    """
    segments = []
    last = None  # last seq of the segments read so far
    for index in range(len(found)):
        number, path = found[index]
        is_last = index == len(found) - 1
        base = segment_base(path)
        if base is None:
            if not is_last:
                raise CompactionGap("%s: torn header in a segment that is not the newest" % path)
            if last is None and number > 1:
                # A crash can tear only the header of a segment being started, and the
                # one before it is still there. Here that one is gone too: damage, and
                # where this segment starts is unknown.
                raise CompactionGap("%s: torn header in the only segment left (segments before it "
                                    "were compacted away): its base seq is unknown" % path)
            base = last if last is not None else after_seq
        if last is None:
            if base > after_seq:
                raise CompactionGap(
                    "%s starts after seq %d, but the newest valid snapshot covers only up to seq %d: "
                    "records %d..%d are gone" % (path, base, after_seq, after_seq + 1, base))
        elif base != last:
            raise CompactionGap("%s starts after seq %d, but the segment before it ends at seq %d" % (
                path, base, last))
        segments.append(Segment(number, path, base))
        if is_last and not read_last:
            break
        next_base = segment_base(found[index + 1][1]) if not is_last else None
        if next_base is not None and next_base <= after_seq:
            last = next_base  # wholly covered by the snapshot: no need to read it
            continue
        last = _replay_segment(MiniStore.stream(path), after_seq, apply, base) if shim.file_size(path) else base
    return segments, last


def read_segments(directory, after_seq=0, apply=None):
    """Read-only: replay the segments in `directory` after `after_seq`; return the last seq.

    A directory that does not exist raises OSError (ENOENT): a wrong path must not read as
    an empty journal."""
    found = segment_files(directory)
    if not found:
        shim.listdir(directory)  # OSError (ENOENT) if there is no such directory
        _check_reaches(after_seq, 0)
        return 0
    segments, last = walk_segments(found, after_seq, apply)
    _check_reaches(after_seq, last)
    return last


def _check_reaches(after_seq, last, cleanup=None):
    if last < after_seq:
        if cleanup is not None:
            cleanup()
        raise CompactionGap("the snapshot is at seq %d but the journal ends at seq %d" % (after_seq, last))


class LogBrick:
    """Closing and context-manager behaviour for a brick built on a SegmentedLog (`_log`).

    `_lock` serializes every public method of the brick, so that several threads may
    share it; methods that hold it call only the unlocked internals (the lock is not
    reentrant on MicroPython).
    """

    _log: "SegmentedLog | None" = None
    _lock = shim.allocate_lock()  # each brick sets its own in __init__
    _closed_seq = 0  # the seq when it was closed: `seq` still answers after close()
    directory = "?"

    def _open_log(self):
        """The log, or ClosedError if the brick is closed."""
        log = self._log
        if log is None:
            raise ClosedError("%s for %s is closed" % (type(self).__name__, self.directory))
        return log

    @property
    def seq(self):
        log = self._log
        return self._closed_seq if log is None else log.seq

    def sync(self):
        """Make everything done so far durable (for sync=N; a no-op under "always")."""
        with self._lock:
            self._open_log().sync()

    def _close_quietly(self):
        """Close after a failure; the error that caused it is the one that matters."""
        log, self._log = self._log, None
        if log is not None:
            self._closed_seq = log.seq
            try:
                log.close()
            except OSError:
                pass

    def close(self):
        """Sync, then release the directory. Closing twice is fine."""
        with self._lock:
            log, self._log = self._log, None
            if log is not None:
                self._closed_seq = log.seq
                log.close()

    @property
    def closed(self):
        return self._log is None

    # MiniStore's: `with` closes; functions of their own would cost a board's heap at import
    __enter__ = MiniStore.__enter__
    __exit__ = MiniStore.__exit__


def _replay_segment(reader, after_seq, apply, base):
    last = base
    with reader:  # an apply() that raises must close the file here: see minireader.recover
        for seq, record in reader:
            last = seq
            if seq > after_seq and apply is not None:
                apply(seq, record)
    return last
