"""minireader: JournalReader, the one reader of the journal format (FORMAT.md 2.4), and
recover(), the writer's recovery at open with it (FORMAT.md 2.5). ministore re-exports the
reader.
"""
import minishim as shim
import miniformat as fmt  # the names used once per reader, or only in recovery: fmt.X, not a global each
from miniformat import (CorruptRecord, TornTail, HEADER, _CRC_TAG, _SUFFIX_LEN, check_header, is_int, parse_line,
                        read_line)


class JournalReader:
    """Iterates (seq, record) over a journal in constant memory (plus one batch).

    The one reader of the journal format (FORMAT.md 2.4): writers recover with it,
    and the host tools (mini cat, verify, repair, tail) read with it.

    After iteration: `torn` is a TornTail or None, `seq` the last sequence number
    read, `base_seq` from the header, `size` the bytes scanned, `lines` the lines
    read, `pads` the number of tails cut by earlier recoveries and `batches` the
    whole batches read, and `unsynced` whether the journal ends after a "sync point" pad
    (a writer with sync=N). A damaged line followed by intact records raises
    CorruptRecord, unless a "sync point" pad before it and no such pad after it say that
    they were all written after the last sync: then they are the torn tail (FORMAT.md
    2.4). A damaged end is reported in `torn`, not raised.

    reporter: an object with report(kind, line, offset, length, reason, lost). The
    reader then raises nothing for damage: it reports each damaged region ("corrupt",
    or "torn" for an unacknowledged end), with the seqs (first, last) it takes with
    it, and reads on from the next intact record, as LevelDB's log::Reader does with
    its Reporter. FormatError (not a journal) is still raised.
    fast: False reads every line the long way (the fast path takes only sealed
    single records that the long way reads the same; tests compare the two).
    """

    def __init__(self, path, from_seq=0, reporter=None, fast=True, _opened=True):
        path = shim.fspath(path)
        self.path = path
        self.from_seq = from_seq
        self.reporter = reporter
        self.batches = 0
        self._fast = fast and reporter is None
        self._region = None      # reporter mode: (offset, line, reason, sealed) of damage not yet reported
        if reporter is not None:
            import minireport  # host tools' mode: loaded only for them
            self._step = lambda line: minireport.step(self, line)
        self.torn = None
        self.pads = 0
        self.lost = []           # (first, last) seq ranges a repair removed (FORMAT.md 2.3)
        self.base_seq = None
        self.seq = None
        self.size = 0
        self._f = open(path, "rb") if _opened else None
        self._line_no = 0
        self._expect = -1        # the next seq; -1 until the header is read
        self._ready = []
        self._ready_at = 0
        self._batch = []         # records of a batch not yet complete
        self._batch_left = 0
        self._batch_at = (0, 0)  # (offset, line) where that batch starts
        self._batch_offsets = []  # offset of each of its lines
        self._bad = None         # (offset, line, reason) of the first damaged line since a good one
        self.unsynced = False    # after a "sync point" pad: lines may have landed out of order (FORMAT.md 2.4)
        self._done = False
        self._quick = False      # header read, no damage pending, no batch open: try the fast path
        self._items = None

    def __iter__(self):
        # A for loop runs the generator (no __next__ call per record). It is not kept
        # here: the loop holds the only reference, so a loop left early (break, an
        # exception) closes the generator at once, and the generator closes the file.
        if self._items is not None:
            return self._items
        return self._generate()

    def __next__(self):
        if self._items is None:
            self._items = self._generate()
        return next(self._items)

    def __repr__(self):
        return "<JournalReader %r seq=%r lines=%d%s%s>" % (
            self.path, self.seq, self._line_no, " torn" if self.torn is not None else "",
            " closed" if self._f is None else "")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    def _peek(self):
        return b"" if self._f is None else fmt.peek_line(self._f)

    @staticmethod
    def pushed(name, reporter, mid_file=False):
        """A reader fed one complete line at a time with push(), for a journal that grows
        somewhere else (`mini tail`). mid_file: the lines start after the header, so the
        first record gives the seq."""
        reader = JournalReader(name, 0, reporter, False, False)
        if mid_file:
            reader._line_no = 1
        return reader

    def push(self, line):
        """Read one complete line (ending with a newline); return the (seq, record) items
        it completes: none while a batch is still open, all of it when it closes."""
        self._ready = []
        self._step(line)
        ready = self._ready
        self._ready = []
        return ready

    def _generate(self):
        f = self._f
        if f is None:
            return
        crc32 = shim.crc32
        loads_between = shim.loads_between
        scan = shim.scan_json
        from_seq = self.from_seq
        size = lines = expect = 0  # self.size, self._line_no, self._expect while on the fast path
        prefix = None  # how the line of seq `expect` starts
        try:
            while True:
                while self._ready_at < len(self._ready):
                    item = self._ready[self._ready_at]
                    self._ready_at += 1
                    yield item
                if self._done:
                    return
                line = read_line(f)
                if self._quick and type(line) is bytes:
                    # The fast path, for what writers write: a sealed single record
                    # {"seq":<the next seq>,"rec":<value>,"crc":"<8 hex>"}. It takes only lines
                    # that _step takes, and reads them the same; any other line goes to _step.
                    if prefix is None:
                        prefix = b'{"seq":%d,"rec":' % expect
                    end = len(line) - _SUFFIX_LEN
                    if line.startswith(prefix) and line.endswith(b'"}\n') and line.startswith(_CRC_TAG, end):
                        try:
                            if b"%08x" % (crc32(line[:end]) & 0xFFFFFFFF) != line[-11:-3]:
                                raise ValueError
                            if scan is None:
                                record = loads_between(line, len(prefix), end)
                            else:
                                text = line.decode("utf-8", "surrogatepass")
                                record, stop = scan(text, len(prefix))
                                if stop != len(text) - _SUFFIX_LEN:
                                    raise ValueError
                        except (ValueError, StopIteration, RuntimeError, MemoryError):
                            pass  # RuntimeError: too deep; all go to _step, which tells them apart
                        else:
                            seq = expect
                            size += len(line)
                            lines += 1
                            expect += 1
                            prefix = None
                            self.seq = seq
                            if seq >= from_seq:
                                yield seq, record
                            continue
                if self._quick:  # hand the state back to _step
                    self.size, self._line_no, self._expect = size, lines, expect
                    self._quick = False
                self._ready = []
                self._ready_at = 0
                self._step(line)
                self._quick = (self._fast and self._expect >= 0 and self._bad is None and not self._batch_left
                               and not self._done)
                if self._quick:
                    size, lines, expect = self.size, self._line_no, self._expect
                    prefix = None
        except BaseException:
            self.close()
            raise
        finally:
            if self._quick:
                self.size, self._line_no, self._expect = size, lines, expect

    def _step(self, line):
        offset = self.size
        if not line:
            self._finish()
            return
        self.size += len(line)
        self._line_no += 1
        if self._line_no == 1:
            base = check_header(self.path, line, self._peek)
            if base is None:
                self._bad = (0, 1, "torn header")
            else:
                self.base_seq = self.seq = base
                self._expect = base + 1
            return
        if self._expect < 0:
            # Our writer syncs the header before it writes anything after it, so a
            # crash leaves a torn header only as the whole file (FORMAT.md 2.1).
            raise CorruptRecord(self.path, 1, 0, "damaged header with more lines after it")
        kind, obj = parse_line(line)
        if kind is None:
            if self._bad is None:
                self._bad = (offset, self._line_no, str(obj))
            return
        if self._bad is not None:
            if (self.unsynced and kind != HEADER and isinstance(obj, dict) and
                    obj.get("why") not in ("sync point", "sync always")):
                return  # written after the damaged line, in the same unsynced stretch: the torn tail's
            bad_off, bad_line, reason = self._bad
            raise CorruptRecord(self.path, bad_line, bad_off, reason + " (intact lines follow)")
        if kind == fmt.FOREIGN or not isinstance(obj, dict):
            raise CorruptRecord(self.path, self._line_no, offset, str(obj))
        if kind == fmt.PAD:
            self.pads += 1
            why = obj.get("why")  # how the lines after it were synced (FORMAT.md 2.3)
            if why == "sync point":
                self.unsynced = True
            elif why == "sync always":
                self.unsynced = False
            lost = obj.get("lost")
            if lost is not None:
                self._skip_lost(lost, offset)
            return
        if kind == HEADER:
            raise CorruptRecord(self.path, self._line_no, offset, "second header")
        self._record(obj, offset)

    def _skip_lost(self, lost, offset):
        """A pad written by `mini repair` says which seqs it moved to a side file."""
        if (not isinstance(lost, list) or len(lost) != 2 or not is_int(lost[0]) or
                not is_int(lost[1]) or lost[0] != self._expect or
                lost[1] < lost[0] or self._batch_left):
            raise CorruptRecord(self.path, self._line_no, offset, "pad with a bad lost range %r" % (lost,))
        self.lost.append((lost[0], lost[1]))
        self._expect = lost[1] + 1
        self.seq = lost[1]

    def _record(self, obj, offset):
        seq = obj["seq"]
        batch = obj.get("batch", 1)
        # An intact line whose fields have the wrong types was not written by us.
        if not is_int(seq) or not is_int(batch) or batch < 1 or "rec" not in obj:
            raise CorruptRecord(self.path, self._line_no, offset, "record line of the wrong shape")
        if seq != self._expect:
            raise CorruptRecord(self.path, self._line_no, offset,
                                "sequence gap: expected seq %d, found %r" % (self._expect, seq))
        self._expect += 1
        item = (seq, obj["rec"])
        if self._batch_left:
            if batch != 1:
                raise CorruptRecord(self.path, self._line_no, offset, "batch starts inside a batch")
            self._batch.append(item)
            self._batch_offsets.append(offset)
            self._batch_left -= 1
            if self._batch_left:
                return
            self.batches += 1
            self._emit(self._batch)
            self._batch = []
        elif batch > 1:
            self._batch = [item]
            self._batch_left = batch - 1
            self._batch_at = (offset, self._line_no)
            self._batch_offsets = [offset]
        else:
            self._emit([item])

    def _emit(self, items):
        self.seq = items[-1][0]
        if items[0][0] < self.from_seq:
            items = [item for item in items if item[0] >= self.from_seq]
        self._ready = items

    def _finish(self):
        self._done = True
        self.close()
        if self._batch_left:
            offset, line = self._batch_at
            reason = "incomplete batch at seq %d (%d of %d records)" % (
                self._batch[0][0], len(self._batch), len(self._batch) + self._batch_left)
            self.torn = TornTail(offset, self.size - offset, line, reason, self._batch_offsets)
        elif self._bad is not None:
            offset, line, reason = self._bad
            self.torn = TornTail(offset, self.size - offset, line, reason)
        if self._line_no == 0:
            self.torn = TornTail(0, 0, 1, "empty file (no header)")


    @property
    def lines(self):
        return self._line_no


class Replay(list):
    """The records of a journal, with `torn` and `seq` as in JournalReader."""

    torn: "TornTail | None" = None
    seq: "int | None" = None


def recover(path, journal_file, base_seq, replay):
    """The writer's recovery at open (MiniStore.open, holding the journal_file): scan the
    journal and overwrite a torn tail with a pad. Return (last seq, size, whether it ends
    in an unsynced stretch: after a "sync point" pad)."""
    size = shim.file_size(path)
    if not size:
        return base_seq, 0, False
    reader = JournalReader(path)
    # with: a replay() that raises must close the file here. On MicroPython nothing
    # closes an abandoned generator, and the collector's finaliser of an open file may
    # run inside another LittleFS call (a block device written in Python): a crash.
    with reader:
        for seq, record in reader:
            if replay is not None:
                replay(seq, record)
    torn = reader.torn
    last = reader.seq
    unsynced = reader.unsynced
    if torn is None:
        assert last is not None  # no damage: the header was read
        return last, reader.size, unsynced
    if last is None:
        # Only a torn header: nothing was ever acknowledged. Write it again, padded.
        data = fmt.header_line(base_seq)
        if torn.length > len(data):
            data += fmt.pad_line(torn.length - len(data), "torn header")  # a header is short: so is this
        journal_file.overwrite(0, [data])
        return base_seq, len(data), False
    # Intact lines of an incomplete batch are damaged first, last one first, one
    # sync each: a crash in between leaves intact lines followed by damaged ones,
    # still a torn tail. Padding over them at once could leave a damaged line
    # followed by intact ones, which reads as corruption in the middle.
    for offset in reversed(torn.intact):
        journal_file.overwrite(offset, [b"X"])
    written = journal_file.overwrite(torn.offset, fmt.pad_pieces(torn.length, "torn tail"))
    return last, torn.offset + written, unsynced
