"""ministore: an append-only, crash-safe JSONL write-ahead log.

MiniStore.open(path) appends records (durable when append returns, under the
default sync="always"); MiniStore.stream(path) and MiniStore.replay(path) read them.
The on-disk format is specified in FORMAT.md (journal format version 1).
"""
import minishim as shim
# The line format and the reader live in their own modules; every public name of
# theirs is re-exported here, so `from ministore import X` works for all of them: those
# used here are imported, the others are looked up in miniformat when asked (__getattr__
# below), not held in this module's globals (a slot each on a board's heap).
from miniformat import (LockedError, ClosedError, encode_json, header_line, record_line, record_pieces,
                        pad_pieces, is_int, length_of)
from minireader import JournalReader, Replay, recover


# ---------------------------------------------------------------- writing

# The pads that say how the lines after them were synced (FORMAT.md 2.3): pad_line(57,
# "sync point") and pad_line(58, "sync always"), as constants (no heap at import, frozen).
# A writer with sync=N starts a write with SYNC_POINT when every byte before it is
# durable: lines after it, up to the next sync, may land in any order in a power cut.
# SYNC_ALWAYS: the writer after it marks no unsynced stretches (sync="always" or 1), so
# the reader is strict again after it.
SYNC_POINT = b'{"pad":57,"why":"sync point","fill":"","crc":"0df1c932"}\n'
SYNC_ALWAYS = b'{"pad":58,"why":"sync always","fill":"","crc":"12fa6ea7"}\n'


class MiniStore:
    """A journal opened for appending. Use MiniStore.open()."""

    # _mark, _littlefs: named as the attributes they set, because on a board each new name
    # an argument brings is an interned string on the heap at import.
    def __init__(self, path, sync, journal_file, seq, size, _mark, _littlefs):
        self.path = path
        self.sync_every = sync
        self.seq = seq
        self.durable_seq = seq
        self.size = size
        self._file = journal_file
        self._lock = shim.allocate_lock()  # every method may be called from several threads
        # The group commit (_sync_upto), all under _lock:
        self._leading = False  # a thread syncs outside the lock (CPython); one at a time
        self._followers = []  # (seq, lock) of each thread waiting for a sync
        self._standby = None  # (seq, lock) of the thread waiting to lead the next sync
        self._due = 0  # how many of the threads the last sync let go are not back yet
        self._sync_time = 0.0  # how long the last sync took: a standby waits at most 3 times that
        self._timed = False  # whether syncs are timed (once a thread followed one)
        self._pending = []  # lines left to the next sync to write (_put)
        self._chain = []  # gates of the threads a sync let go, not yet released: see _pass_on
        self._littlefs = _littlefs  # the block size of the LittleFS the file is on (refresh, _block_end)
        # The pad a write starts with once every byte before it is durable (FORMAT.md 2.3):
        # SYNC_POINT under sync=N, SYNC_ALWAYS once to end a journal's unsynced stretch.
        self._mark = _mark
        self._unmarked = -1  # the size a sync covered, while no pad says so; else -1
        # Whether the sync runs under _lock. On MicroPython: its files are not safe to
        # flush while another thread writes to them, and the sync is no faster outside.
        # Under sync=N (its sync points): no write lands during a sync, so each sync point
        # follows a sync that covered every byte before it, and an unsynced stretch never
        # spans a sync (other threads' writes during a sync kept it open across syncs).
        self._under_lock = shim.MICROPYTHON or _mark is SYNC_POINT
        # What the leader takes once its sync is over: when it still holds _lock then, a
        # lock of its own, taken only under _lock: never waited for.
        self._after_sync = shim.allocate_lock() if self._under_lock else self._lock

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
        # The writer's sync_every: None for "always" and for 1, which is the same promise (each
        # append durable when it returns) and takes the group commit with it: an append of
        # another thread during a sync waits for the next one, not written outside the sync
        # where a reordering file system could leave it as a hole before an intact line.
        if sync == "always":
            sync_every = None
        elif is_int(sync) and sync >= 1:
            sync_every = None if sync == 1 else sync
        else:
            raise ValueError('sync must be "always" or an int >= 1, not %r' % (sync,))
        if not is_int(base_seq) or base_seq < 0:
            raise ValueError("base_seq must be a non-negative int")
        parent = shim.dirname(path)
        if parent:
            shim.makedirs(parent)
        journal_file = hold(shim.JournalFile, path)
        try:
            seq, size, unsynced = recover(path, journal_file, base_seq, replay)
            journal_file.start_appending()
            littlefs = shim.littlefs_block(path)
            # A file on LittleFS lands a sync whole, or not at all: no order to say. Under
            # sync=1 an append is synced before the next one: no unsynced stretch either.
            mark = SYNC_POINT if (sync_every or 0) > 1 and not littlefs else SYNC_ALWAYS if unsynced else None
            if size == 0:
                journal_file.write(header_line(base_seq))
                journal_file.sync()
                shim.sync_dir(parent or ".")
                size = len(header_line(base_seq))
            if mark is not None:
                journal_file.sync()  # what is there may be another process's unsynced appends
            marked = mark is SYNC_POINT and not unsynced
            if marked:
                # Synced now, not with the first write: a write can be lost in a hole with
                # its pad, and then an earlier "sync point" pad must still say what follows.
                journal_file.write(SYNC_POINT)
                journal_file.sync()
                size += len(SYNC_POINT)
            # In the try too: MicroPython has no finalizer to let the path go if a Ctrl-C (or
            # a board's MemoryError) lands in the constructor.
            store = MiniStore(path, sync_every, journal_file, seq, size, mark, littlefs)
        except BaseException:
            journal_file.close()
            raise
        if mark is not None and not marked:
            store._unmarked = size  # synced above: the first write starts with the pad
        if store._littlefs:
            journal_file.reopen_every = _REOPEN_EVERY  # see refresh()
        return store

    # -- reading (class-level, no lock needed)

    @staticmethod
    def stream(path, from_seq=0):
        """A JournalReader over `path` (or a FlashReader over a raw flash region): iterate
        it for (seq, record), records with seq >= from_seq, in constant memory. Use
        `with MiniStore.stream(p) as r:` to close it whatever happens (on CPython a for
        loop left early closes it too, on MicroPython only `with` or close() do).
        Read-only: no lock."""
        path = shim.fspath(path)
        return JournalReader(path, from_seq) if isinstance(path, str) else _flash().FlashReader(path, from_seq)

    @staticmethod
    def replay(path, from_seq=0):
        """Every record of `path` (from from_seq on) as a list, with `.torn` (a TornTail
        or None) and `.seq` (the last seq) set. Read-only: no lock."""
        reader = MiniStore.stream(path, from_seq)
        out = Replay()
        with reader:  # closed on a MemoryError too (see _recover)
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
            line = record_line(self.seq + 1, body) if len(body) <= _PIECE else record_pieces(self.seq + 1, body)
            seq = self._put(line, 1, self.sync_every is None)
        self._sync_if_due(seq)
        return seq

    def append_many(self, records):
        """Append records as one atomic batch with one sync; return the last seq."""
        if isinstance(records, (str, bytes, bytearray, dict)):  # one value: iterated, it would be its parts
            raise TypeError("a batch is a list, not a %s (one value)" % type(records).__name__)
        return self.append_encoded([encode_json(r) for r in records])  # validate all before writing any

    def append_encoded(self, bodies, durable=True, lead=(), waits=False):
        """Append records encoded by encode_json() (nothing else: they are not checked again):
        one, or an atomic batch. Returns the last seq.

        For the bricks that must know a record is storable before they act on it
        (ministate applies a mutator only once its record has encoded), without
        encoding it twice. durable=False writes without syncing whatever the policy:
        the records become durable with the next sync. lead: groups of records written
        first, each an atomic batch (or a single record), in the same write (miniqueue's
        deferred gets and acks, ahead of the put that makes them durable): one write, so
        a crash keeps a prefix of it, and of each group all or nothing. waits=True (with
        durable=False): the caller calls wait_durable() for them next, outside its own
        lock (miniqueue's concurrent puts), so the store may leave their lines to the
        sync it will wait for, as an append's (_put).
        """
        count = len(bodies)
        self._lock.acquire()  # not `with`: on CPython 3.11 this takes half its time (75 vs 146 ns)
        try:
            if count == 0 and not lead:
                return self.seq
            seq = self.seq
            lines = []
            for group in lead:
                if len(group) == 1:  # a get or an ack: no batch to mark
                    seq += 1
                    lines.append(record_line(seq, group[0]))
                    continue
                for i in range(len(group)):
                    lines.append(record_line(seq + 1 + i, group[i], len(group) if i == 0 else 1))
                seq += len(group)
            runs = _IN_RUNS  # through _joined: a long record, or any batch on MicroPython
            batch = count  # on the batch's first line
            for body in bodies:
                seq += 1
                if len(body) > _PIECE:
                    runs = True
                    lines.append(record_pieces(seq, body, batch))
                else:
                    lines.append(record_line(seq, body, batch))
                batch = 1
            joins = waits or (durable and self.sync_every is None)
            data = _joined(lines) if runs else lines[0] if len(lines) == 1 else b"".join(lines)
            seq = self._put(data, seq - self.seq, joins)
        finally:
            self._lock.release()
        if durable:
            self._sync_if_due(seq)
        return seq

    def _put(self, data, count, joins):
        """Under the lock: append `data` (`count` records); return the last seq. A thread
        that joins the group commit (it waits for a sync next, _sync_upto) leaves its
        lines to the leader of the sync it will wait for, which writes every line left
        to it in one write, then syncs: one system call, not one per thread (each lets
        CPython's GIL go to another thread), and never two writes before a sync. Two
        threads that wrote their own lines, one after the other, before either synced,
        left a stretch of two unsynced writes: a file system that lands them out of
        order could leave a hole before an intact line, refused as corruption (FORMAT.md
        2.3)."""
        if joins:
            if self._file is None:
                raise ClosedError("%s is closed" % self.path)
            self._pending.append(data)
            self.seq += count
            self.size += length_of(data) if type(data) is list else len(data)  # as written: compaction counts them
            return self.seq
        return self._write(data, count)

    def _write(self, data, count):
        """Write under the lock, after the lines left to a sync, without syncing; return
        the last seq written."""
        journal_file = self._file
        if journal_file is None:
            raise ClosedError("%s is closed" % self.path)
        pending = self._pending
        try:
            length = length_of(data) if type(data) is list else len(data)  # not in self.size yet
            held = 0  # bytes of the lines left to this sync: in self.size already (_put)
            if pending:  # they come first: seqs go up through the file
                self._pending = []
                for item in pending:
                    held += length_of(item) if type(item) is list else len(item)
                if data:
                    pending.append(data)
                data = _joined(pending)
            data_out = data
            mark = self._mark
            if mark is not None and self._unmarked == self.size - held:
                data_out = _joined([mark, data_out])  # every byte before it is durable: say so
            else:
                mark = b""
            in_pieces = type(data_out) is list  # a long record's line (record_pieces) among them
            if in_pieces and not _IN_RUNS:
                # CPython: one write(), as every stretch a sync covers is (FORMAT.md 2.3): a
                # file system may land a later write() without an earlier one.
                data_out = b"".join(data_out)  # pyright: ignore[reportArgumentType] (a list of bytes here)
                in_pieces = False
            # Pads only where each write is synced (sync="always"): elsewhere no copy follows a write.
            fill = (self._block_end(length_of(data_out) if in_pieces else len(data_out), self.size + len(mark) + length)
                    if self._littlefs and self.sync_every is None else ())
            padded = len(mark)
            if in_pieces:  # one write() after another, no sync between: a crash keeps a prefix, as of one
                for piece in data_out:
                    journal_file.write(piece)
            else:
                journal_file.write(data_out)
            if fill:  # written in pieces: on a board one pad of up to 4 KB may find no block that large
                for piece in fill:
                    journal_file.write(piece)
                    padded += len(piece)
        except BaseException:  # an OSError; on a board, a MemoryError
            # Part of `data` may be on disk: appending after it would put a torn line in the
            # middle. And lines left to this sync have their seqs counted: if they are not
            # all written, a later line would leave a gap. Stop here: the store is closed
            # (ClosedError), and the next open() cuts the tail.
            self._abandon()
            raise
        if mark:
            self._unmarked = -1
            if mark is SYNC_ALWAYS:
                self._mark = None  # once: each write after it is synced before the next
        self.seq += count
        self.size += length + padded
        return self.seq

    def refresh(self):
        """Call after files of the journal's directory were removed (or created) while it is
        open. On LittleFS it opens the file again: LittleFS 2.11 can leave an open file
        believing the directory's metadata block has no erased space left when another
        file's removal compacted that block, and then every sync of the file compacts
        (erases) it again, until the file is reopened (measured: twice the erases per
        append). The same happens when a file is opened while that block is full, so on
        LittleFS the file is also reopened every _REOPEN_EVERY syncs (shim.JournalFile).
        Elsewhere it does nothing."""
        with self._lock:
            journal_file = self._file
            if not self._littlefs or journal_file is None:
                return
            try:
                journal_file.reopen()
            except OSError:
                self._abandon()
                raise

    def _block_end(self, length, end):
        """A pad line that fills the rest of the LittleFS block, in pieces, or () (FORMAT.md 2.3).

        LittleFS copies a file's last block to a newly erased one at every sync; a synced
        write that runs into the next block erases that one too. When the block would
        not hold another write as long as this one (`length` bytes, ending at file offset
        `end`), a pad fills it, so the next write starts a block of its own: about 0.03
        erases per append fewer at 134-byte records (bench/mp_ministore.py)."""
        left = shim.littlefs_left(end, self._littlefs)
        if left >= length:
            return ()
        fill = list(pad_pieces(left, "block end", piece=256))
        return fill if sum(len(piece) for piece in fill) == left else ()  # too short to pad: the next write crosses

    def _sync_if_due(self, seq):
        if self.sync_every is None or self.seq - self.durable_seq >= self.sync_every:
            self._sync_upto(seq)

    def _sync_upto(self, seq):
        """Return once `seq` is durable: the group commit (CPython; on MicroPython the
        sync holds _lock, so no thread ever waits for another's).

        One thread at a time syncs, the leader, and its sync covers every record written
        before it began. The others wait on a lock of their own that the leader releases
        when its sync is over, then look again. The threads a sync let go are likely to
        append again at once, so the next sync waits for them: one thread stands by until
        the last of them is back (that one leads, and the standby follows its sync without
        being woken before it ends), or if some do not come, for three times as long as
        the last sync took: that outlasts the returning threads and the sync they start, so
        the standby's timer does not wake it in the middle of that sync, which delays the
        sync's end (by 40 us of 200 us measured on a 2-core VM). So a sync covers all their
        records, not half of them. No polling, no background thread; each append is still
        durable when it returns (bench/bench_ministore.py counts the syncs per append)."""
        back = True
        gate = None
        target = 0  # the seq the sync this thread leads covers: self._leading while it leads
        try:
            while True:
                self._lock.acquire()  # not `with`: on CPython 3.11 this takes half its time (75 vs 146 ns)
                try:
                    if back:
                        back = False
                        if self._due and not self._leading:
                            self._due -= 1  # one of the threads the last sync let go is back
                    if self.durable_seq >= seq:
                        return  # a sync that began after our write covered it
                    if self._file is None:
                        raise ClosedError("%s is closed" % self.path)
                    gate = None
                    if self._leading or (self._due and self._standby is not None):
                        self._timed = True  # threads wait for syncs: time them for the standby
                        gate = shim.held_lock()
                        self._followers.append((seq, gate))
                        wait = -1
                    elif self._due:
                        gate = shim.held_lock()
                        self._standby = (seq, gate)
                        wait = min(3 * self._sync_time, _MAX_STANDBY)
                    else:
                        if self._pending:
                            self._write(b"", 0)  # every line left to this sync, in one write
                        standby = self._standby
                        if standby is not None:  # it waited for this thread: now it follows this sync
                            self._standby = None
                            self._followers.append(standby)
                        journal_file = self._file
                        target = self.seq
                        size = self.size
                        self._leading = target  # true: seq >= 1 here, and no two leads cover the same seq
                        if self._under_lock:
                            self._sync_file(journal_file, target, size)
                            return
                finally:
                    self._lock.release()
                if gate is None:
                    self._sync_file(journal_file, target, size)
                    return
                try:
                    woken = gate.acquire(True, wait)  # a leader, or the thread woken before, releases it
                    self._pass_on()
                    if not woken:
                        with self._lock:  # a standby's wait is over
                            if self._standby is not None and self._standby[1] is gate:
                                self._standby = None  # not all came back: lead without them
                                self._due = 0
                                continue
                        gate.acquire()  # the last thread back made it follow its sync meanwhile
                        self._pass_on()
                except BaseException:  # (KeyboardInterrupt) whoever waits on this thread looks again
                    with self._lock:
                        self._pass_on()
                        if self._standby is not None and self._standby[1] is gate:
                            self._standby = None
                            self._due = 0
                        if not self._leading:
                            self._let_go()
                    raise
                if self.durable_seq >= seq:
                    return  # covered: no need for the lock (CPython only: on MicroPython no one waits)
        except BaseException:
            # A KeyboardInterrupt raised after this thread took the lead, before its sync
            # began (_sync_file undoes the lead once it has): else every later append
            # would wait for a sync that never ends, and close() too.
            if target:
                with self._lock:
                    if self._leading == target:
                        self._leading = False
                        self._let_go()
            raise

    def _follow(self, seq):
        """Wait for the running sync to end; self._lock is held on entry and on return."""
        gate = shim.held_lock()
        self._followers.append((seq, gate))
        self._lock.release()
        try:
            gate.acquire()  # the leader releases it
        finally:
            self._pass_on()
            self._lock.acquire()

    def _sync_file(self, journal_file, target, size):
        synced = failed = False
        started = _clock() if self._timed else 0.0  # pyright: ignore[reportOptionalCall] (never None when _timed)
        try:
            journal_file.sync()  # CPython: outside the lock, so that others write meanwhile
            synced = True
        except OSError:
            failed = True
            raise
        finally:  # whatever happened, the followers look again
            self._after_sync.acquire()
            try:
                if synced:
                    self.durable_seq = target
                    self._unmarked = size
                if failed:
                    self._abandon()  # they find the store closed
                self._leading = False
                followers = self._followers
                if followers:  # let go the covered ones; one of the others stands by for the next sync
                    self._sync_time = min(_clock() - started, _MAX_STANDBY)  # pyright: ignore[reportOptionalCall] (never None when _timed)
                    go = [gate for seq, gate in followers if seq <= self.durable_seq]
                    left = [(seq, gate) for seq, gate in followers if seq > self.durable_seq]
                    self._due = len(go) + 1  # this thread too
                    if left:
                        go.append(left.pop()[1])
                    self._followers = left
                else:
                    go = ()
            finally:
                self._after_sync.release()
            if go:
                self._chain.extend(go[1:])
                go[0].release()

    def _pass_on(self):
        """Wake the next of the threads a sync let go: each one woken wakes the next. The
        leader used to release them all at once; each woke only to wait for CPython's GIL,
        which woke it a second time (perf stat, 8 threads sharing syncs: 3.0 context
        switches per append then, 2.4 now; 5-7% more appends a second on a 2-core VM). A
        thread woken for nothing looks again (_sync_upto), so every way out of a wait
        passes on, and _let_go wakes whatever is left."""
        try:
            self._chain.pop().release()  # atomic under the GIL: no lock (no one waits on MicroPython)
        except IndexError:
            pass

    def sync(self):
        """Make every record appended so far durable."""
        with self._lock:
            if self._file is None:
                raise ClosedError("%s is closed" % self.path)
            seq = self.seq
        self._sync_upto(seq)

    def _let_go(self):
        """Under _lock: every waiting thread looks again (the file closed, or the thread
        they waited for quit)."""
        followers, self._followers = self._followers, []
        standby, self._standby = self._standby, None
        self._due = 0
        for _, gate in followers:
            gate.release()
        while self._chain:
            self._pass_on()
        if standby is not None:
            standby[1].release()

    def _abandon(self):
        journal_file, self._file = self._file, None
        self._pending = []  # never acknowledged: their threads find the store closed
        self._let_go()
        if journal_file is None:
            return
        try:
            journal_file.close()
        except OSError:
            pass

    def close(self):
        """Sync what is pending, then release the journal. Closing twice is fine."""
        with self._lock:
            while self._leading:  # the file stays open until the sync of another thread is over
                self._follow(self.seq)
            journal_file = self._file
            if journal_file is None:
                return
            if self._pending:
                self._write(b"", 0)  # abandons the store if it fails
            try:
                if self.durable_seq < self.seq:
                    journal_file.sync()
                    self.durable_seq = self.seq
            except OSError:
                self._abandon()
                raise
            self._file = None
            self._let_go()
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

    # wait_durable(seq): return once record `seq` (appended with durable=False) is durable,
    # sharing one sync with the threads that wrote meanwhile. A store closed since had synced
    # it first; ClosedError if it failed or was closed before (miniqueue's concurrent puts).
    # _sync_upto itself, not a call to it: every put of a queue waits through it.
    wait_durable = _sync_upto


# LittleFS: reopen the journal file after that many syncs, which bounds the erases an
# open file stuck compacting its directory's metadata can cost (MiniStore.refresh).
_REOPEN_EVERY = 16

# The group commit's clock (CPython only: a MicroPython sync holds _lock, so no thread
# follows a sync, _timed stays False, and _clock is never called: None there).
_clock = getattr(__import__("time"), "perf_counter", None)
_MAX_STANDBY = 0.01  # seconds: as jbd2 (Linux's ext4 journal) bounds its own batching wait


# A record longer than this is written as its line's pieces (record_pieces), not copied
# into the line: on a board the copies of a 4 KB record, not the record, ran out of heap.
_PIECE = 1024


# On MicroPython a batch's lines are joined in runs of at most _PIECE bytes, each run a
# write() of its own: a board's fragmented heap may have no larger block (a checkpoint
# batch of 4 KiB, or a put_many, needed one). CPython joins a whole batch: one system call.
_IN_RUNS = shim.MICROPYTHON
_JOIN_MAX = _PIECE if _IN_RUNS else 0x3FFFFFFF


def _joined(items):
    """What one write of `items` (each bytes, or a list of pieces) puts in the file: the
    bytes joined, as one; or, with a long record among them or (MicroPython) more than
    _JOIN_MAX bytes in all, a list of pieces in which each long one stands as it is and
    the short ones between them are joined in runs of at most _JOIN_MAX bytes."""
    size = 0
    for item in items:
        if isinstance(item, list):
            break
        size += len(item)
    else:
        if len(items) == 1:
            return items[0]
        if size <= _JOIN_MAX:
            return b"".join(items)
    out = []
    run = []
    size = 0
    for item in items:
        for piece in item if isinstance(item, list) else (item,):
            n = len(piece)
            if run and (n > _PIECE or size + n > _JOIN_MAX):
                out.append(b"".join(run))
                run = []
                size = 0
            if n > _PIECE:
                out.append(piece)
            else:
                run.append(piece)
                size += n
    if run:
        out.append(b"".join(run))
    return out


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


def __getattr__(name):
    """The public names of miniformat not imported above (MiniError, CorruptRecord, parse_line...)."""
    if name[:1] == "_":
        raise AttributeError(name)
    return getattr(__import__("miniformat"), name)
