# ministore: an append-only, crash-safe JSONL write-ahead log.
# The on-disk format is specified in FORMAT.md (journal format version 1).
import minishim as shim

FORMAT_NAME = "ministore"
FORMAT_VERSION = 1
MAX_DEPTH = 32  # nesting limit, so MicroPython's small C stack never overflows in json

_CRC_TAG = b',"crc":"'
_SUFFIX_LEN = 19  # len(b',"crc":"') + 8 hex digits + len(b'"}\n')
_PAD_MIN = 40  # shortest pad line we write


class MiniError(Exception):
    """Base class of every error the bricks raise on purpose."""


class CorruptRecord(MiniError):
    """A damaged line with intact data after it: never skipped, never repaired silently."""

    def __init__(self, path, line, offset, reason):
        super().__init__("%s: line %d (byte offset %d): %s" % (path, line, offset, reason))
        self.path = path
        self.line = line
        self.offset = offset
        self.reason = reason


class FormatError(MiniError):
    """The file is not a ministore journal, or is of a version this code does not read."""


class LockedError(MiniError):
    """Another writer (this process or another) has the journal open."""


class ClosedError(MiniError):
    """The store was closed, or a failed write left it in an unknown state: reopen it."""


class TornTail:
    """The unacknowledged end of a journal that a crash left incomplete."""

    def __init__(self, offset, length, line, reason, intact=()):
        self.offset = offset
        self.length = length
        self.line = line
        self.reason = reason
        self.intact = list(intact)  # offsets of intact lines in it (an incomplete batch)

    def __repr__(self):
        return "TornTail(offset=%d, length=%d, line=%d, reason=%r)" % (
            self.offset, self.length, self.line, self.reason)


# ---------------------------------------------------------------- encoding

_INF = float("inf")
_INT_DIGITS = 4300
try:
    _BIG = 10 ** 300  # below it an int is short enough without counting its digits
except OverflowError:  # a port without big ints: every int is below any bound
    _BIG = _INF


def check_value(value, depth=0, _type=type, _str=str, _int=int, _bool=bool, _float=float, _small=0x3FFFFFFF,
                _big=_BIG):
    """Raise TypeError/ValueError unless JSON stores `value` exactly (it reads back equal, same types).

    That includes ints of at most 4300 digits: CPython (3.11+) refuses to parse longer
    ones, so a journal written on MicroPython with one would not read on the host.
    The underscore arguments are not for callers: they make names locals, which on
    MicroPython cost no lookup in the module's globals (a miss there can scan them all).
    """
    if depth > MAX_DEPTH:
        raise ValueError("record nested deeper than %d levels" % MAX_DEPTH)
    kind = _type(value)
    if depth < MAX_DEPTH and (kind is dict or kind is list):
        # Fast path: members that are exact str/bool/None, small ints or finite floats need no call.
        is_dict = kind is dict
        for key in value:
            if is_dict:
                if _type(key) is not _str and not isinstance(key, _str):
                    raise TypeError("JSON object keys must be str, not %s" % _type(key).__name__)
                item = value[key]
            else:
                item = key
            cls = _type(item)
            if cls is _str or cls is _bool or item is None:
                continue
            if cls is _int and (-_small < item < _small or -_big < item < _big):  # small first: no big-int compare
                continue
            if cls is _float and item - item == 0.0:  # not nan, not +-inf
                continue
            check_value(item, depth + 1)
        return
    if value is None or isinstance(value, (str, bool)):
        return
    if isinstance(value, int):  # bool is no int on MicroPython, so it is handled above
        if -_small < value < _small or -_BIG < value < _BIG or len(str(value).lstrip("-")) <= _INT_DIGITS:
            return
        raise ValueError("an int of more than %d digits does not read back on CPython" % _INT_DIGITS)
    if isinstance(value, float):
        if value != value or value in (_INF, -_INF):
            raise ValueError("JSON cannot store %r" % value)
        return
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError("JSON object keys must be str, not %s" % type(key).__name__)
            check_value(value[key], depth + 1)
        return
    if isinstance(value, list):
        for item in value:
            check_value(item, depth + 1)
        return
    # tuples read back as lists, bytes as str (MicroPython) or not at all (CPython)
    raise TypeError("JSON cannot store a %s exactly" % type(value).__name__)


def encode_json(value, depth=0):
    """`value` as compact JSON bytes, or TypeError/ValueError if it would not read back exactly."""
    check_value(value, depth)
    return shim.dumps(value).encode()


# MicroPython does not always read back the float text it writes: a single-precision
# build (ESP32 and RP2040 firmware) often (0.109633684 parses as 0.10963368), a double
# build now and then (16 digits written where 17 are needed). Recovery parses the
# journal, so the bricks give back what the journal holds (FORMAT.md 1, floats): ministate
# applies mutators rebuilt from their encoded record, miniqueue delivers and journals
# settle()d bodies. One write-parse pass settles a normal float; a float32 subnormal can
# drift at every pass (7.278e-39 -> 9.517e-39 -> 1.064e-38) and is refused. CPython
# reads its own floats back exactly: nothing to do there.
FLOAT_TEXT_INEXACT = shim.MICROPYTHON
# A float in our JSON has a digit just before its "." or "e"; a body without any such
# pair holds no float and needs no settling (20 C-speed scans instead of a parse).
_FLOAT_MARKS = tuple(b"%d%s" % (d, m) for m in (b".", b"e") for d in range(10))


def may_hold_float(body):
    for mark in _FLOAT_MARKS:
        if mark in body:
            return True
    return False


def settle(body):
    """JSON bytes whose parse this runtime writes back as text that parses to the same
    values (so a replay that re-encodes what it parsed gives back the same); `body`
    itself when it is so already, and always on CPython.
    ValueError if a float drifts at every pass (a float32 subnormal)."""
    if not FLOAT_TEXT_INEXACT or not may_hold_float(body):
        return body
    for _ in range(2):
        value = shim.loads(body)
        again = shim.dumps(value).encode()
        if again == body or shim.loads(again) == value:  # bytes differ in key order only, or not at all
            return body
        body = again
    raise ValueError("a float in %s... does not read back on this runtime "
                     "(a subnormal below 1.18e-38?)" % body[:40].decode())


def seal(body):
    """Finish a line: `body` (bytes, starting with '{') + its CRC field + '}' + newline."""
    return b"%s,\"crc\":\"%08x\"}\n" % (body, shim.crc32(body) & 0xFFFFFFFF)


def header_line(base_seq):
    return seal(b'{"format":"%s","version":%d,"base_seq":%d' % (
        FORMAT_NAME.encode(), FORMAT_VERSION, base_seq))


def record_line(seq, body, batch=1):
    if batch > 1:
        return seal(b'{"seq":%d,"batch":%d,"rec":%s' % (seq, batch, body))
    return seal(b'{"seq":%d,"rec":%s' % (seq, body))


def pad_line(length, reason, lost=None):
    """A valid line of max(length, _PAD_MIN) bytes or more that marks `length` cut bytes."""
    head = b'{"pad":%d,"why":"%s",' % (length, reason.encode())
    if lost is not None:
        head += b'"lost":[%d,%d],' % (lost[0], lost[1])
    head += b'"fill":"'
    fill = length - len(head) - 1 - _SUFFIX_LEN
    if fill < 0:
        fill = 0
    return seal(head + b" " * fill + b'"')


# ---------------------------------------------------------------- decoding

HEADER, RECORD, PAD, FOREIGN = 0, 1, 2, 3


def parse_line(line):
    """Return (kind, obj) for a sealed line, or (None, reason) for a damaged one.

    (FOREIGN, reason): the CRC matches, so no crash made the line, but it is not a
    line this code reads (another writer, or a runtime that wrote JSON this one
    cannot parse). It is corruption wherever it is, never a torn tail.
    """
    if line[-1:] != b"\n":
        return None, "incomplete line (no newline)"
    if len(line) < _SUFFIX_LEN + 2 or line[-_SUFFIX_LEN:-11] != _CRC_TAG or line[-3:] != b'"}\n':
        return None, "line has no crc field"
    try:
        stored = int(line[-11:-3], 16)
    except ValueError:
        return None, "crc field is not hex"
    if shim.crc32(line[:-_SUFFIX_LEN]) & 0xFFFFFFFF != stored:
        return None, "crc mismatch"
    try:
        obj = shim.loads(line)
    except (ValueError, RuntimeError):  # RuntimeError: nested too deep for this runtime
        return FOREIGN, "crc matches but the line is not JSON this runtime parses"
    if not isinstance(obj, dict):
        return FOREIGN, "crc matches but the line is not a JSON object"
    if "seq" in obj:
        return RECORD, obj
    if "pad" in obj:
        return PAD, obj
    if "format" in obj:
        return HEADER, obj
    return FOREIGN, "line is neither a record, a pad nor a header"


def check_header(path, line):
    """Validate the first line; return base_seq, or None if it is torn."""
    kind, obj = parse_line(line)
    sealed = kind is not None
    if kind is None:
        if line[-1:] == b"\n":
            # A complete first line that is not ours: refuse rather than treat it as torn.
            try:
                obj = shim.loads(line)
            except (ValueError, RuntimeError):
                obj = None
            if isinstance(obj, dict) and "format" not in obj:
                raise FormatError("%s: not a ministore journal (first line has no format)" % path)
            if isinstance(obj, dict):
                kind = HEADER  # fall through to the name and version checks
        if kind is None:
            return None
    if kind != HEADER or not isinstance(obj, dict):
        raise FormatError("%s: not a ministore journal (first line is not a header)" % path)
    if obj.get("format") != FORMAT_NAME:
        raise FormatError("%s: format %r is not %r" % (path, obj.get("format"), FORMAT_NAME))
    if obj.get("version") != FORMAT_VERSION:
        raise FormatError("%s: journal format version %r is not supported (this code reads %d)" % (
            path, obj.get("version"), FORMAT_VERSION))
    if not sealed:
        # Our name and version, but the CRC fails: a damaged header, not a foreign
        # file, and its base_seq cannot be trusted. It reads as a torn header.
        return None
    base = obj.get("base_seq")
    if not isinstance(base, int) or isinstance(base, bool) or base < 0:
        raise FormatError("%s: header has no valid base_seq" % path)
    return base


def is_int(value):
    """An int that is not a bool (MicroPython's bool is not an int subclass; CPython's is)."""
    return isinstance(value, int) and not isinstance(value, bool)


class JournalReader:
    """Iterates (seq, record) over a journal in constant memory (plus one batch).

    After iteration: `torn` is a TornTail or None, `seq` the last sequence number
    read, `base_seq` from the header, `size` the bytes scanned and `pads` the number
    of tails cut by earlier recoveries. A damaged line followed by intact records
    raises CorruptRecord; a damaged end is reported in `torn`, not raised.
    """

    def __init__(self, path, from_seq=0):
        self.path = path
        self.from_seq = from_seq
        self.torn = None
        self.pads = 0
        self.lost = []           # (first, last) seq ranges a repair removed (FORMAT.md 2.3)
        self.base_seq = None
        self.seq = None
        self.size = 0
        self._f = open(path, "rb")
        self._line_no = 0
        self._expect = -1        # the next seq; -1 until the header is read
        self._ready = []
        self._ready_at = 0
        self._batch = []         # records of a batch not yet complete
        self._batch_left = 0
        self._batch_at = (0, 0)  # (offset, line) where that batch starts
        self._batch_offsets = []  # offset of each of its lines
        self._bad = None         # (offset, line, reason) of the first damaged line since a good one
        self._done = False
        self._quick = False      # header read, no damage pending, no batch open: try the fast path
        self._items = self._generate()

    def __iter__(self):
        return self._items  # a for loop runs the generator: no __next__ call per record

    def __next__(self):
        return next(self._items)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    def _generate(self):
        f = self._f
        if f is None:
            return
        readline = f.readline
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
                line = readline()
                if self._quick:
                    # The fast path, for what writers write: a sealed single record
                    # {"seq":<the next seq>,"rec":<value>,"crc":"<8 hex>"}. It takes only lines
                    # that _step takes, and reads them the same; any other line goes to _step.
                    if prefix is None:
                        prefix = b'{"seq":%d,"rec":' % expect
                    end = len(line) - _SUFFIX_LEN
                    if line.startswith(prefix) and line.endswith(b'"}\n') and line.startswith(_CRC_TAG, end):
                        try:
                            if int(line[-11:-3], 16) != crc32(line[:end]) & 0xFFFFFFFF:
                                raise ValueError
                            if scan is None:
                                record = loads_between(line, len(prefix), end)
                            else:
                                text = line.decode("utf-8", "surrogatepass")
                                record, stop = scan(text, len(prefix))
                                if stop != len(text) - _SUFFIX_LEN:
                                    raise ValueError
                        except (ValueError, StopIteration, RuntimeError):  # RuntimeError: too deep
                            pass
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
                self._quick = (self._expect >= 0 and self._bad is None and not self._batch_left
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
            base = check_header(self.path, line)
            if base is None:
                self._bad = (0, 1, "torn header")
            else:
                self.base_seq = self.seq = base
                self._expect = base + 1
            return
        kind, obj = parse_line(line)
        if kind is None:
            if self._bad is None:
                self._bad = (offset, self._line_no, str(obj))
            return
        if self._bad is not None:
            bad_off, bad_line, reason = self._bad
            raise CorruptRecord(self.path, bad_line, bad_off, reason + " (intact lines follow)")
        if kind == FOREIGN or not isinstance(obj, dict):
            raise CorruptRecord(self.path, self._line_no, offset, str(obj))
        if kind == PAD:
            self.pads += 1
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


class Replay(list):
    """The records of a journal, with `torn` and `seq` as in JournalReader."""

    torn: "TornTail | None" = None
    seq: "int | None" = None


# ---------------------------------------------------------------- writing

class MiniStore:
    """A journal opened for appending. Use MiniStore.open()."""

    def __init__(self, path, sync, journal_file, seq, size):
        self.path = path
        self.sync_every = sync
        self.seq = seq
        self.durable_seq = seq
        self.size = size
        self._file = journal_file
        self._unsynced = 0

    @staticmethod
    def open(path, sync: "str | int" = "always", base_seq=0, replay=None):
        """Open (creating it and its directories if needed) `path` for appending.

        A torn tail left by a crash is overwritten by a pad line first. `replay`,
        if given, is called as replay(seq, record) for every intact record, so
        recovery costs one read of the journal.
        """
        sync_every = _check_sync(sync)
        if not isinstance(base_seq, int) or base_seq < 0:
            raise ValueError("base_seq must be a non-negative int")
        parent = shim.dirname(path)
        if parent:
            shim.makedirs(parent)
        try:
            journal_file = shim.JournalFile(path)
        except shim.Locked:
            raise LockedError("%s is already open for writing (one writer at a time)" % path)
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
        return JournalReader(path, from_seq)

    @staticmethod
    def replay(path, from_seq=0):
        reader = JournalReader(path, from_seq)
        out = Replay()
        for _, record in reader:
            out.append(record)
        out.torn = reader.torn
        out.seq = reader.seq
        return out

    # -- writing

    def append(self, record):
        """Append one record; return its seq. Durable on return under sync="always"."""
        line = record_line(self.seq + 1, encode_json(record))
        self._write(line, 1)
        return self.seq

    def append_many(self, records):
        """Append records as one atomic batch with one sync; return the last seq."""
        return self._append_encoded([encode_json(r) for r in records])  # validate all before writing any

    def _append_encoded(self, bodies):
        """Append records encoded by encode_json() (nothing else: they are not checked again):
        one, or an atomic batch. Returns the last seq.

        For the bricks that must know a record is storable before they act on it
        (ministate applies a mutator only once its record has encoded), without
        encoding it twice.
        """
        count = len(bodies)
        if count == 0:
            return self.seq
        lines = [record_line(self.seq + 1, bodies[0], count)]
        for i in range(1, count):
            lines.append(record_line(self.seq + 1 + i, bodies[i]))
        self._write(b"".join(lines), count)
        return self.seq

    def _write(self, data, count):
        journal_file = self._file
        if journal_file is None:
            raise ClosedError("%s is closed" % self.path)
        try:
            journal_file.write(data)
            self.seq += count
            self.size += len(data)
            self._unsynced += count
            if self.sync_every is None or self._unsynced >= self.sync_every:
                self._sync(journal_file)
        except OSError:
            # Part of `data` may be on disk: appending after it would put a torn
            # line in the middle. Stop here; the next open() cuts the tail.
            self._abandon()
            raise

    def sync(self):
        """Make every record appended so far durable."""
        journal_file = self._file
        if journal_file is None:
            raise ClosedError("%s is closed" % self.path)
        if self._unsynced:
            try:
                self._sync(journal_file)
            except OSError:
                self._abandon()
                raise

    def _sync(self, journal_file):
        journal_file.sync()
        self._unsynced = 0
        self.durable_seq = self.seq

    def _abandon(self):
        journal_file, self._file = self._file, None
        if journal_file is None:
            return
        try:
            journal_file.close()
        except OSError:
            pass

    def close(self):
        if self._file is None:
            return
        try:
            self.sync()
        finally:
            journal_file, self._file = self._file, None  # None already if sync() failed
            if journal_file is not None:
                # Not _abandon(): closing can still write (LittleFS commits the file's
                # mtime), and a close that failed must not report success.
                journal_file.close()

    @property
    def closed(self):
        return self._file is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check_sync(sync):
    if sync == "always":
        return None
    if isinstance(sync, int) and not isinstance(sync, bool) and sync >= 1:
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
            data += pad_line(torn.length - len(data), "torn header")
        journal_file.overwrite(0, data)
        return base_seq, len(data)
    # Intact lines of an incomplete batch are damaged first, last one first, one
    # sync each: a crash in between leaves intact lines followed by damaged ones,
    # still a torn tail. Padding over them at once could leave a damaged line
    # followed by intact ones, which reads as corruption in the middle.
    for offset in reversed(torn.intact):
        journal_file.overwrite(offset, b"X")
    pad = pad_line(torn.length, "torn tail")
    journal_file.overwrite(torn.offset, pad)
    return last, torn.offset + len(pad)
