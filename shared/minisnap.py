# minisnap: atomic snapshots, and a journal in segments that snapshots let us compact.
# On-disk formats: FORMAT.md, sections 3 and 4.
#
# Nothing here ever renames a file: on FAT a rename is two directory writes and a
# power cut between them can lose both names. Each snapshot is written under a new
# name and is valid only when its CRC checks; each compaction step is "create a new
# file" or "remove a file that is no longer needed", each safe to cut at any point.
import minishim as shim
from ministore import MiniStore, MiniError, LockedError, ClosedError, encode_json, seal, parse_line, check_header, FLOAT_TEXT_INEXACT

SNAP_FORMAT = "minisnap"
SNAP_VERSION = 1
_SNAP_PREFIX = "snap-"
_SNAP_SUFFIX = ".json"
_SEG_PREFIX = "journal-"
_SEG_SUFFIX = ".jsonl"


class NotFound(MiniError):
    """There is no valid snapshot."""


class SnapshotError(MiniError):
    """A snapshot file is damaged or not a snapshot."""


class CompactionGap(MiniError):
    """The journal and the snapshots do not fit together: records are missing."""


def _numbered(directory, prefix, suffix):
    """Sorted [(number, path)] of files named prefix + 8 digits + suffix."""
    out = []
    try:
        names = shim.listdir(directory)
    except OSError as exc:
        if shim.is_missing(exc):
            return out
        raise
    for name in names:
        middle = name[len(prefix):len(name) - len(suffix)]
        if name.startswith(prefix) and name.endswith(suffix) and len(middle) == 8 and middle.isdigit():
            out.append((int(middle), shim.join(directory, name)))
    out.sort()
    return out


def snapshot_bytes(state, seq, state_json=None):
    """The snapshot file's bytes; state_json is encode_json(state), if the caller has it already."""
    if state_json is None:
        state_json = encode_json(state)
    if FLOAT_TEXT_INEXACT and shim.loads(state_json) != state:
        # restore() would not give back this state (StateManager settles its state first).
        raise ValueError("the state holds a float that this runtime does not "
                         "read back exactly; store it as an int or a string")
    return seal(b'{"format":"%s","version":%d,"seq":%d,"state":%s' % (
        SNAP_FORMAT.encode(), SNAP_VERSION, seq, state_json))


def read_snapshot(path):
    """Return (state, seq) from a snapshot file; raise SnapshotError if it is not intact."""
    with open(path, "rb") as f:
        data = f.read()
    if data.count(b"\n") != 1:
        raise SnapshotError("%s: not exactly one line (torn or damaged)" % path)
    kind, obj = parse_line(data)
    if kind is None or not isinstance(obj, dict):
        raise SnapshotError("%s: %s" % (path, obj))
    if obj.get("format") != SNAP_FORMAT:
        raise SnapshotError("%s: not a minisnap snapshot" % path)
    if obj.get("version") != SNAP_VERSION:
        raise SnapshotError("%s: snapshot version %r is not supported (this code reads %d)" % (
            path, obj.get("version"), SNAP_VERSION))
    seq = obj.get("seq")
    if not isinstance(seq, int) or seq < 0 or "state" not in obj:
        raise SnapshotError("%s: no valid seq or state" % path)
    return obj["state"], seq


class SnapStore:
    """Snapshots of a state in `directory`, newest `keep` valid ones kept.

    After restore(), `skipped` lists (path, reason) for every newer snapshot that was
    damaged and passed over, and `fell_back` is True if there was any.
    """

    def __init__(self, directory, keep=2):
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise ValueError("keep must be an int >= 1")
        self.directory = directory
        self.keep = keep
        self.skipped = []
        self.fell_back = False

    def files(self):
        return _numbered(self.directory, _SNAP_PREFIX, _SNAP_SUFFIX)

    def create(self, state, seq, state_json=None):
        """Write a snapshot of `state` at `seq`; durable before it returns. Returns its path.

        state_json: encode_json(state), when the caller has already encoded it.
        """
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError("seq must be an int >= 0")
        data = snapshot_bytes(state, seq, state_json)  # validates the state before touching the disk
        shim.makedirs(self.directory)
        existing = self.files()
        number = existing[-1][0] + 1 if existing else 1
        path = shim.join(self.directory, "%s%08d%s" % (_SNAP_PREFIX, number, _SNAP_SUFFIX))
        shim.write_new_file(path, data)
        self.prune()
        return path

    def restore(self):
        """Return (state, seq) of the newest valid snapshot; raise NotFound if there is none."""
        self.skipped = []
        for number, path in reversed(self.files()):
            try:
                state, seq = read_snapshot(path)
            except (SnapshotError, ValueError) as exc:
                self.skipped.append((path, str(exc)))
                continue
            self.fell_back = bool(self.skipped)
            return state, seq
        self.fell_back = bool(self.skipped)
        raise NotFound("no valid snapshot in %s" % self.directory)

    def valid(self):
        """[(seq, path)] of the valid snapshots, newest first."""
        out = []
        for number, path in reversed(self.files()):
            try:
                out.append((read_snapshot(path)[1], path))
            except (SnapshotError, ValueError):
                pass
        return out

    def prune(self):
        """Remove damaged snapshots, and valid ones beyond the newest `keep`.

        A damaged snapshot is a write that a crash cut short (create never returned)
        or one that rotted; the journal is kept back to the oldest valid snapshot, so
        removing it loses nothing.
        """
        kept = 0
        for number, path in reversed(self.files()):
            try:
                read_snapshot(path)
                if kept < self.keep:
                    kept += 1
                    continue
            except (SnapshotError, ValueError):
                pass
            shim.remove_durably(path)

    def oldest_seq(self):
        """The seq of the oldest snapshot kept, or None: journal up to it may be compacted."""
        valid = self.valid()
        return valid[-1][0] if valid else None


def segment_files(directory):
    """Sorted [(number, path)] of the journal segments in `directory`."""
    return _numbered(directory, _SEG_PREFIX, _SEG_SUFFIX)


def segment_base(path):
    """base_seq from a journal segment's header, or None if the header is torn."""
    with open(path, "rb") as f:
        line = f.readline()
    return check_header(path, line)


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
        self.segments = segments  # [(number, path, base_seq)], the last one is open in `store`
        self.store = store

    @staticmethod
    def open(directory, after_seq=None, apply=None, sync: "str | int" = "always"):
        """Open the log; call apply(seq, record) for every record after `after_seq` (default 0).

        `after_seq` may be a function, called once the directory is locked: a brick
        must read its snapshots or segments only under the lock, or a writer that
        is compacting could remove them under its feet.
        Raises CompactionGap if records after `after_seq` are missing, or if the
        log ends before `after_seq`.
        """
        shim.makedirs(directory)
        try:
            lock = shim.DirLock(directory)
        except shim.Locked:
            raise LockedError("%s is already open for writing (one writer at a time)" % directory)
        try:
            if callable(after_seq):
                after_seq = after_seq()
            if after_seq is None:
                after_seq = 0
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
            return SegmentedLog(directory, sync, [(1, path, after_seq)], store, lock)
        segments, last = walk_segments(found, after_seq, apply, read_last=False)

        def replay_last(seq, record):
            if seq > after_seq and apply is not None:
                apply(seq, record)
        store = MiniStore.open(segments[-1][1], sync=sync, base_seq=segments[-1][2], replay=replay_last)
        _check_reaches(after_seq, store.seq, store.close)
        return SegmentedLog(directory, sync, segments, store, lock)

    @property
    def seq(self):
        return self.store.seq

    def append(self, record):
        return self.store.append(record)

    def append_many(self, records):
        return self.store.append_many(records)

    def _append_encoded(self, bodies):
        return self.store._append_encoded(bodies)

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
        for number, path, base in self.segments:
            _replay_segment(MiniStore.stream(path), after_seq, apply, base)

    def active_bytes(self):
        return self.store.size

    def roll(self):
        """Start a new segment after the current seq (the old one is synced and closed)."""
        seq = self.store.seq
        self.store.close()
        number = self.segments[-1][0] + 1
        path = shim.join(self.directory, "%s%08d%s" % (_SEG_PREFIX, number, _SEG_SUFFIX))
        self.store = MiniStore.open(path, sync=self.sync_policy, base_seq=seq)
        self.segments.append((number, path, seq))

    def compact(self, upto_seq):
        """Remove the segments (never the active one) whose records all have seq <= upto_seq."""
        if upto_seq is None:
            return 0
        removed = 0
        while len(self.segments) > 1 and self.segments[1][2] <= upto_seq:
            shim.remove_durably(self.segments[0][1])
            self.segments.pop(0)
            removed += 1
        return removed


def walk_segments(found, after_seq, apply, read_last=True):
    """Check that segments `found` ([(number, path)]) continue each other and reach
    back to `after_seq`; call apply(seq, record) for each record after it.

    Returns ([(number, path, base_seq)], last seq read). With read_last=False the
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
        segments.append((number, path, base))
        if is_last and not read_last:
            break
        next_base = segment_base(found[index + 1][1]) if not is_last else None
        if next_base is not None and next_base <= after_seq:
            last = next_base  # wholly covered by the snapshot: no need to read it
            continue
        last = _replay_segment(MiniStore.stream(path), after_seq, apply, base) if shim.file_size(path) else base
    return segments, last


def read_segments(directory, after_seq=0, apply=None):
    """Read-only: replay the segments in `directory` after `after_seq`; return the last seq."""
    found = segment_files(directory)
    if not found:
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


class LogOwner:
    """Closing and context-manager behaviour for a brick built on a SegmentedLog (`_log`)."""

    _log: "SegmentedLog | None" = None
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
        log, self._log = self._log, None
        if log is not None:
            self._closed_seq = log.seq
            log.close()

    @property
    def closed(self):
        return self._log is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _replay_segment(reader, after_seq, apply, base):
    last = base
    for seq, record in reader:
        last = seq
        if seq > after_seq and apply is not None:
            apply(seq, record)
    return last
