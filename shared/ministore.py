"""ministore: an append-only, crash-safe JSONL write-ahead log.

MiniStore.open(path) appends records (durable when append returns, under the
default sync="always"); MiniStore.stream(path) and MiniStore.replay(path) read them.
The on-disk format is specified in FORMAT.md (journal format version 1).
"""
import minishim as shim
# The line format and the reader live in their own modules; every public name of
# theirs is re-exported here, so `from ministore import X` works for all of them.
from miniformat import (FORMAT_NAME, FORMAT_VERSION, MAX_DEPTH, MAX_LINE, MiniError, CorruptRecord,
                        FormatError, LockedError, ClosedError, TornTail, check_value, encode_json,
                        FLOAT_TEXT_INEXACT, may_hold_float, settle, seal, header_line, record_line, pad_line,
                        pad_pieces, HEADER, RECORD, PAD, FOREIGN, parse_line, check_header, LongDamage, LongPad,
                        read_line, peek_line, is_int)
from minireader import JournalReader, Replay


# ---------------------------------------------------------------- writing

# MicroPython files are not safe to flush while another thread writes to them, and
# there the sync is no faster for it: it runs under the writers' lock.
_SYNC_UNDER_LOCK = shim.MICROPYTHON


class _relock:
    """`with _relock(lock, held):` takes `lock` unless this thread holds it already."""

    def __init__(self, lock, held):
        self.lock = None if held else lock

    def __enter__(self):
        if self.lock is not None:
            self.lock.acquire()

    def __exit__(self, *exc):
        if self.lock is not None:
            self.lock.release()


class MiniStore:
    """A journal opened for appending. Use MiniStore.open()."""

    def __init__(self, path, sync, journal_file, seq, size):
        self.path = path
        self.sync_every = sync
        self.seq = seq
        self.durable_seq = seq
        self.size = size
        self._file = journal_file
        self._lock = shim.allocate_lock()  # every method may be called from several threads
        self._sync_lock = shim.allocate_lock()  # one sync at a time; taken before _lock, never after

    @staticmethod
    def open(path, sync: "str | int" = "always", base_seq=0, replay=None):
        """Open (creating it and its directories if needed) `path` for appending.

        A torn tail left by a crash is overwritten by a pad line first. `replay`,
        if given, is called as replay(seq, record) for every intact record, so
        recovery costs one read of the journal.
        """
        path = shim.fspath(path)
        if not isinstance(path, str):  # a raw flash region (miniflash, FORMAT.md 6)
            return _flash().FlashStore.open(path, sync, base_seq, replay)
        sync_every = _check_sync(sync)
        if not is_int(base_seq) or base_seq < 0:
            raise ValueError("base_seq must be a non-negative int")
        parent = shim.dirname(path)
        if parent:
            shim.makedirs(parent)
        journal_file = hold(shim.JournalFile, path)
        try:
            seq, size = _recover(path, journal_file, base_seq, replay)
            journal_file.start_appending()
            if size == 0:
                journal_file.write(header_line(base_seq))
                journal_file.sync()
                shim.sync_dir(parent or ".")
                size = len(header_line(base_seq))
        except BaseException:
            journal_file.close()
            raise
        return MiniStore(path, sync_every, journal_file, seq, size)

    # -- reading (class-level, no lock needed)

    @staticmethod
    def stream(path, from_seq=0):
        """A JournalReader over `path` (or a FlashReader over a raw flash region): iterate
        it for (seq, record), records with seq >= from_seq, in constant memory. Use
        `with MiniStore.stream(p) as r:` to close it whatever happens (a for loop left
        early closes it too). Read-only: no lock."""
        path = shim.fspath(path)
        return JournalReader(path, from_seq) if isinstance(path, str) else _flash().FlashReader(path, from_seq)

    @staticmethod
    def replay(path, from_seq=0):
        """Every record of `path` (from from_seq on) as a list, with `.torn` (a TornTail
        or None) and `.seq` (the last seq) set. Read-only: no lock."""
        reader = MiniStore.stream(path, from_seq)
        out = Replay()
        for _, record in reader:
            out.append(record)
        out.torn = reader.torn
        out.seq = reader.seq
        return out

    # -- writing

    def append(self, record):
        """Append one record; return its seq. Durable on return under sync="always"."""
        body = encode_json(record)  # outside the lock: other threads need not wait for it
        with self._lock:
            seq = self._write(record_line(self.seq + 1, body), 1)
        self._sync_if_due(seq)
        return seq

    def append_many(self, records):
        """Append records as one atomic batch with one sync; return the last seq."""
        return self.append_encoded([encode_json(r) for r in records])  # validate all before writing any

    def append_encoded(self, bodies, durable=True, lead=()):
        """Append records encoded by encode_json() (nothing else: they are not checked again):
        one, or an atomic batch. Returns the last seq.

        For the bricks that must know a record is storable before they act on it
        (ministate applies a mutator only once its record has encoded), without
        encoding it twice. durable=False writes without syncing whatever the policy:
        the records become durable with the next sync. lead: groups of records written
        first, each an atomic batch (or a single record), in the same write (miniqueue's
        deferred gets and acks, ahead of the put that makes them durable): one write, so
        a crash keeps a prefix of it, and of each group all or nothing.
        """
        count = len(bodies)
        with self._lock:
            if count == 0 and not lead:
                return self.seq
            seq = self.seq
            lines = []
            for group in lead:
                for i in range(len(group)):
                    lines.append(record_line(seq + 1 + i, group[i], len(group) if i == 0 else 1))
                seq += len(group)
            if count:
                lines.append(record_line(seq + 1, bodies[0], count))
                for i in range(1, count):
                    lines.append(record_line(seq + 1 + i, bodies[i]))
            seq = self._write(b"".join(lines), seq + count - self.seq)
        if durable:
            self._sync_if_due(seq)
        return seq

    def _write(self, data, count):
        """Write under the lock, without syncing; return the last seq written."""
        journal_file = self._file
        if journal_file is None:
            raise ClosedError("%s is closed" % self.path)
        try:
            journal_file.write(data)
        except OSError:
            # Part of `data` may be on disk: appending after it would put a torn
            # line in the middle. Stop here; the next open() cuts the tail.
            self._abandon()
            raise
        self.seq += count
        self.size += len(data)
        return self.seq

    def _sync_if_due(self, seq):
        if self.sync_every is None or self.seq - self.durable_seq >= self.sync_every:
            self._sync_upto(seq)

    def _sync_upto(self, seq):
        """Return once `seq` is durable. Group commit: the threads that wrote while one
        sync ran share the next one, so each append is still durable when it returns,
        and 8 threads pay for about 2 syncs, not 8 (bench/bench_ministore.py)."""
        with self._sync_lock:
            if self.durable_seq >= seq:
                return  # a sync that started after our write covered it
            with self._lock:
                journal_file = self._file
                if journal_file is None:
                    raise ClosedError("%s is closed" % self.path)
                target = self.seq
                if _SYNC_UNDER_LOCK:
                    self._sync_file(journal_file, target)
                    return
            self._sync_file(journal_file, target)

    def _sync_file(self, journal_file, target):
        try:
            journal_file.sync()  # CPython: outside the lock, so that others write meanwhile
        except OSError:
            with _relock(self._lock, _SYNC_UNDER_LOCK):
                self._abandon()
            raise
        if target > self.durable_seq:
            self.durable_seq = target

    def sync(self):
        """Make every record appended so far durable."""
        with self._lock:
            if self._file is None:
                raise ClosedError("%s is closed" % self.path)
            seq = self.seq
        self._sync_upto(seq)

    def _abandon(self):
        journal_file, self._file = self._file, None
        if journal_file is None:
            return
        try:
            journal_file.close()
        except OSError:
            pass

    def close(self):
        """Sync what is pending, then release the journal. Closing twice is fine."""
        with self._sync_lock:  # no sync of another thread runs while the file closes
            with self._lock:
                journal_file = self._file
                if journal_file is None:
                    return
                try:
                    if self.durable_seq < self.seq:
                        journal_file.sync()
                        self.durable_seq = self.seq
                except OSError:
                    self._abandon()
                    raise
                self._file = None
                # Not _abandon(): closing can still write (LittleFS commits the file's
                # mtime), and a close that failed must not report success.
                journal_file.close()

    @property
    def closed(self):
        return self._file is None

    def __repr__(self):
        return "<MiniStore %r seq=%d durable_seq=%d sync=%s%s>" % (
            self.path, self.seq, self.durable_seq, "always" if self.sync_every is None else self.sync_every,
            " closed" if self._file is None else "")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _flash():
    import miniflash  # only when a region is used: the file bricks never load it
    return miniflash


def hold(take, path):
    """take(path): a shim.JournalFile or shim.DirLock, or LockedError if another writer
    holds it (raised outside the handler, so no BlockingIOError is chained to it)."""
    held = None
    try:
        held = take(path)
    except shim.Locked:
        pass
    if held is None:
        raise LockedError("%s is already open for writing (one writer at a time)" % path)
    return held


def _check_sync(sync):
    if sync == "always":
        return None
    if is_int(sync) and sync >= 1:
        return sync
    raise ValueError('sync must be "always" or an int >= 1, not %r' % (sync,))


def _recover(path, journal_file, base_seq, replay):
    """Scan the journal; overwrite a torn tail with a pad. Return (last seq, size)."""
    size = shim.file_size(path)
    if not size:
        return base_seq, 0
    reader = JournalReader(path)
    for seq, record in reader:
        if replay is not None:
            replay(seq, record)
    torn = reader.torn
    last = reader.seq
    if torn is None:
        assert last is not None  # no damage: the header was read
        return last, reader.size
    if last is None:
        # Only a torn header: nothing was ever acknowledged. Write it again, padded.
        data = header_line(base_seq)
        if torn.length > len(data):
            data += pad_line(torn.length - len(data), "torn header")  # a header is short: so is this
        journal_file.overwrite(0, [data])
        return base_seq, len(data)
    # Intact lines of an incomplete batch are damaged first, last one first, one
    # sync each: a crash in between leaves intact lines followed by damaged ones,
    # still a torn tail. Padding over them at once could leave a damaged line
    # followed by intact ones, which reads as corruption in the middle.
    for offset in reversed(torn.intact):
        journal_file.overwrite(offset, [b"X"])
    written = journal_file.overwrite(torn.offset, pad_pieces(torn.length, "torn tail"))
    return last, torn.offset + written
