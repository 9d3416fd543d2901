"""ministore: an append-only, crash-safe JSONL write-ahead log.

MiniStore.open(path) appends records (durable when append returns, under the
default sync="always"); MiniStore.stream(path) and MiniStore.replay(path) read them.
The on-disk format is specified in FORMAT.md (journal format version 1).
"""
import minishim as shim

TYPE_CHECKING = False  # pyright takes it as True: annotations only, never imported at run time
if TYPE_CHECKING:
    from typing import TypeGuard

FORMAT_NAME = "ministore"
FORMAT_VERSION = 1
MAX_DEPTH = 32  # nesting limit, so MicroPython's small C stack never overflows in json

_CRC_TAG = b',"crc":"'
MAX_LINE = 1 << 20  # the longest line a writer writes (FORMAT.md 2.2): append refuses longer records
# Bytes the reader takes at once. A longer line is read in pieces and kept only if it
# is sealed, so damage of any length costs no more heap than the largest record.
_LINE_BUDGET = 4096 if shim.MICROPYTHON else MAX_LINE
_SUFFIX_LEN = 19  # len(b',"crc":"') + 8 hex digits + len(b'"}\n')


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
    _BIG = 10 ** 300  # below it an int is short enough without comparing it to the limit
    _INT_LIMIT = 10 ** _INT_DIGITS  # the smallest int of _INT_DIGITS + 1 digits
except OverflowError:  # a port without big ints: every int is below any bound
    _BIG = _INT_LIMIT = _INF


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
        # Compared, not counted: CPython's str() itself refuses such an int, with advice
        # (sys.set_int_max_str_digits) that would not make the journal readable elsewhere.
        if -_small < value < _small or -_BIG < value < _BIG or -_INT_LIMIT < value < _INT_LIMIT:
            return
        raise ValueError("ints of more than %d digits are refused: CPython 3.11+ cannot read them back, "
                         "so the journal would not read on every host (store a string instead)" % _INT_DIGITS)
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
    if len(body) > MAX_LINE - 64:  # room for the seq, batch and CRC around it
        raise ValueError("a record of %d bytes is longer than a journal line may be (%d bytes)" % (
            len(body), MAX_LINE))
    if batch > 1:
        return seal(b'{"seq":%d,"batch":%d,"rec":%s' % (seq, batch, body))
    return seal(b'{"seq":%d,"rec":%s' % (seq, body))


def pad_line(length, reason, lost=None):
    """A sealed line that marks `length` cut bytes: exactly `length` bytes long, or its
    shortest form (45 + len(reason) + the digits of length, plus `lost`) if longer."""
    return b"".join(pad_pieces(length, reason, lost))


def pad_pieces(length, reason, lost=None, piece=4096):
    """pad_line() in pieces of at most `piece` bytes of fill, its CRC computed as they
    go: recovery pads over damage of any size without holding it in RAM."""
    head = b'{"pad":%d,"why":"%s",' % (length, reason.encode())
    if lost is not None:
        head += b'"lost":[%d,%d],' % (lost[0], lost[1])
    head += b'"fill":"'
    fill = length - len(head) - 1 - _SUFFIX_LEN
    crc = shim.crc32(head)
    yield head
    spaces = b" " * min(max(fill, 0), piece)
    while fill > 0:
        chunk = spaces if fill >= len(spaces) else spaces[:fill]
        crc = shim.crc32(chunk, crc)
        fill -= len(chunk)
        yield chunk
    yield b'","crc":"%08x"}\n' % (shim.crc32(b'"', crc) & 0xFFFFFFFF)


# ---------------------------------------------------------------- decoding

HEADER, RECORD, PAD, FOREIGN = 0, 1, 2, 3


def parse_line(line):
    """Return (kind, obj) for a sealed line, or (None, reason) for a damaged one.

    (FOREIGN, reason): the CRC matches, so no crash made the line, but it is not a
    line this code reads (another writer, or a runtime that wrote JSON this one
    cannot parse). It is corruption wherever it is, never a torn tail.
    """
    if line.__class__ is LongDamage:
        return None, line.reason
    if line[-1:] != b"\n":
        return None, "incomplete line (no newline)"
    if len(line) < _SUFFIX_LEN + 2 or line[-_SUFFIX_LEN:-11] != _CRC_TAG or line[-3:] != b'"}\n':
        return None, "line has no crc field"
    # Compared as text: int(x, 16) would also take " 1a4b49f", "+1a4b49f" or "1_a4b49f".
    if b"%08x" % (shim.crc32(line[:-_SUFFIX_LEN]) & 0xFFFFFFFF) != line[-11:-3]:
        return None, "crc mismatch" if has_crc_shape(line) else "crc field is not 8 lowercase hex digits"
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


_HEADER_FIXED = b'{"format":"ministore","version":1,"base_seq":'
_CRC_SHAPE = b',"crc":"########"}\n'  # '#' is one lowercase hex digit
_HEADER_MAX = len(_HEADER_FIXED) + 20 + len(_CRC_SHAPE)  # base_seq below 10**20


def _fits(data, at, pattern):
    """True if data[at:] is a prefix of `pattern` (or all of it), '#' matching a lowercase hex digit."""
    for i in range(min(len(data) - at, len(pattern))):
        want = pattern[i]
        got = data[at + i]
        if want == 35:  # '#'
            if not (48 <= got <= 57 or 97 <= got <= 102):
                return False
        elif got != want:
            return False
    return len(data) - at <= len(pattern)


def _digits_end(data, at):
    while at < len(data) and 48 <= data[at] <= 57:
        at += 1
    return at


def is_torn_header(line):
    """True if `line` (the first line of a file, or all of it) is what our writer can
    leave while creating a journal, or a header of ours damaged since (FORMAT.md 2.1).

    That is: the line, with any 0x00 bytes at its end removed, is a prefix of
    `{"format":"ministore","version":1,"base_seq":<digits>,"crc":"<8 hex>"}\n`;
    or it is a whole line that ends as a sealed line does (a line we sealed).
    """
    if len(line) > _HEADER_MAX:
        return False  # longer than any header we write
    end = len(line)
    while end and line[end - 1] == 0:
        end -= 1
    data = line[:end]
    fixed = len(_HEADER_FIXED)
    if data[:fixed] != _HEADER_FIXED[:len(data)]:
        return has_crc_shape(line)
    if len(data) <= fixed:
        return True
    at = _digits_end(data, fixed)
    if at == len(data):
        return True
    return (at > fixed and _fits(data, at, _CRC_SHAPE)) or has_crc_shape(line)


def has_crc_shape(line):
    """True if `line` ends as every sealed line does: `,"crc":"<8 lowercase hex>"}\n`."""
    return len(line) >= len(_CRC_SHAPE) and _fits(line, len(line) - len(_CRC_SHAPE), _CRC_SHAPE)


def _names_us(line):
    """A whole line, no longer than a header, that parses as our header: a header
    whose CRC field was damaged (the rest of it is intact, so it is ours)."""
    if len(line) > _HEADER_MAX or line[-1:] != b"\n":
        return False
    try:
        obj = shim.loads(line)
    except (ValueError, RuntimeError):
        return False
    return isinstance(obj, dict) and obj.get("format") == FORMAT_NAME and obj.get("version") == FORMAT_VERSION


def check_header(path, line, peek=None):
    """Validate the first line; return base_seq, or None if it is a torn header.

    Raises FormatError for a file that is not a ministore journal (FORMAT.md 2.1):
    callers must then leave it untouched. peek() returns the second line, without
    consuming it: asked only for a first line of no shape of ours, where a sealed
    line after it means a journal of ours with a damaged header.
    """
    kind, obj = parse_line(line)
    if kind is None:
        # Damaged: what it says cannot be trusted, so its shape decides (FORMAT.md 2.1).
        if is_torn_header(line) or _names_us(line) or (peek is not None and parse_line(peek())[0] is not None):
            return None
        raise FormatError("%s: not a ministore journal (its first line is not a ministore header)" % path)
    if kind != HEADER or not isinstance(obj, dict):
        raise FormatError("%s: not a ministore journal (first line is not a header)" % path)
    if obj.get("format") != FORMAT_NAME:
        raise FormatError("%s: not a ministore journal (format %r is not %r)" % (path, obj.get("format"), FORMAT_NAME))
    if obj.get("version") != FORMAT_VERSION:
        raise FormatError("%s: journal format version %r is not supported (this code reads %d)" % (
            path, obj.get("version"), FORMAT_VERSION))
    base = obj.get("base_seq")
    if not is_int(base) or base < 0:
        raise FormatError("%s: header has no valid base_seq" % path)
    return base


class LongDamage:
    """A damaged line longer than the reader takes at once: its length and why, not its bytes."""

    def __init__(self, length, reason):
        self.length = length
        self.reason = reason

    def __len__(self):
        return self.length


def read_line(f, budget=_LINE_BUDGET):
    """The next line of `f` (b"" at the end), or a LongDamage for a damaged line longer
    than `budget`: such a line is read in pieces, its CRC computed as they pass, and
    read whole only if it is sealed (FORMAT.md 1), so heap stays bounded by the
    largest intact line whatever the size of the damage."""
    line = f.readline(budget)
    if len(line) < budget or line[-1:] == b"\n":
        return line
    start = f.tell() - len(line)
    crc = shim.crc32(line[:-_SUFFIX_LEN])
    pending = line[-_SUFFIX_LEN:]  # the last bytes, which may be the CRC field
    length = len(line)
    complete = False
    while True:
        piece = f.readline(budget)
        if not piece:
            break
        length += len(piece)
        data = pending + piece
        crc = shim.crc32(data[:-_SUFFIX_LEN], crc)
        pending = data[-_SUFFIX_LEN:]
        if piece[-1:] == b"\n":
            complete = True
            break
    if complete and has_crc_shape(pending) and b"%08x" % (crc & 0xFFFFFFFF) == pending[-11:-3]:
        f.seek(start)
        return f.read(length)  # sealed: its record is needed whole
    return LongDamage(length, "crc mismatch" if complete else "incomplete line (no newline)")


def peek_line(f):
    """The next line of file `f`, leaving its position where it was."""
    at = f.tell()
    line = read_line(f)
    f.seek(at)
    return line


def is_int(value) -> "TypeGuard[int]":
    """An int that is not a bool (MicroPython's bool is not an int subclass; CPython's is)."""
    return isinstance(value, int) and not isinstance(value, bool)


class JournalReader:
    """Iterates (seq, record) over a journal in constant memory (plus one batch).

    The one reader of the journal format (FORMAT.md 2.4): writers recover with it,
    and the host tools (mini cat, verify, repair, tail) read with it.

    After iteration: `torn` is a TornTail or None, `seq` the last sequence number
    read, `base_seq` from the header, `size` the bytes scanned, `lines` the lines
    read, `pads` the number of tails cut by earlier recoveries and `batches` the
    whole batches read. A damaged line followed by intact records raises
    CorruptRecord; a damaged end is reported in `torn`, not raised.

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
            self._step = self._step_reporting
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
        return b"" if self._f is None else peek_line(self._f)

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

    # -- reporter mode: the same rules, but damage is reported and reading goes on

    def _step_reporting(self, line):
        offset = self.size
        if not line:
            self._finish_reporting()
            return
        self.size += len(line)
        self._line_no += 1
        number = self._line_no
        if number == 1:
            base = check_header(self.path, line, self._peek)  # FormatError: not ours, nothing to report
            if base is None:
                self._region = (0, 1, "torn header", False)
            else:
                self.base_seq = self.seq = base
                self._expect = base + 1
            return
        region = self._region
        if number == 2 and region is not None:  # a crash leaves a torn header only as the whole file
            region = self._region = (0, 1, "damaged header with more lines after it", True)
        kind, obj = parse_line(line)
        if kind is None:
            if region is None:
                self._region = (offset, number, str(obj), False)
            return
        if region is not None and not region[3]:  # sealed data after damage: corruption, not a torn tail
            region = self._region = (region[0], region[1], region[2], True)
        damage = _damage(self, kind, obj)
        if damage is not None or not isinstance(obj, dict):
            if region is None:
                self._region = (offset, number, damage or str(obj), True)
            return
        reporter = self.reporter
        assert reporter is not None  # this method runs only with one (see __init__)
        if kind == PAD:
            self.pads += 1
            lost = obj.get("lost")
            if lost is not None and region is None:
                if self._batch_left or lost[0] != self._expect:
                    self._region = (offset, number, "pad with a bad lost range %r" % (lost,), True)
                else:
                    self._skip_lost(lost, offset)
            return
        seq = obj["seq"]
        if self._expect < 0:  # intact records after a torn header: they say where it started
            self._expect = seq
            self.base_seq = seq - 1
        if region is not None or seq != self._expect:
            start = region or (offset, number, "sequence gap: expected seq %d, found %d" % (self._expect, seq), True)
            first_lost = self._expect
            if self._batch_left:  # the batch lost a member: it goes whole
                first_lost = self._batch[0][0]
                start = (self._batch_at[0], self._batch_at[1],
                         start[2] + " (inside the batch at seq %d)" % first_lost, True)
                self._batch = []
                self._batch_left = 0
            reporter.report("corrupt", start[1], start[0], offset - start[0], start[2],
                            (first_lost, seq - 1) if seq > first_lost else None)
            self._region = None
            self._expect = seq
        self._record(obj, offset)

    def _finish_reporting(self):
        self._done = True
        self.close()
        reporter = self.reporter
        assert reporter is not None
        start = self._region
        if self._batch_left:
            reason = "incomplete batch at seq %d" % self._batch[0][0]
            sealed = False
            if start is not None and start[3]:
                sealed = True
                reason = "%s (inside the batch at seq %d)" % (start[2], self._batch[0][0])
            start = (self._batch_at[0], self._batch_at[1], reason, sealed)
        if start is not None:
            reporter.report("corrupt" if start[3] else "torn", start[1], start[0],
                                 self.size - start[0], start[2], None)
            if not start[3]:
                self.torn = TornTail(start[0], self.size - start[0], start[1], start[2])
        if self._line_no == 0:
            self.torn = TornTail(0, 0, 1, "empty file (no header)")
            reporter.report("torn", 1, 0, 0, "empty file (no header)", None)


def _damage(reader, kind, obj):
    """Why an intact line cannot be taken where it stands (reporter mode), or None."""
    if kind == FOREIGN or not isinstance(obj, dict):
        return str(obj)
    if kind == HEADER:
        return "second header"
    if kind == PAD:
        lost = obj.get("lost")
        if lost is None or (isinstance(lost, list) and len(lost) == 2 and is_int(lost[0]) and
                            is_int(lost[1]) and lost[0] <= lost[1]):
            return None
        return "pad line of the wrong shape"
    batch = obj.get("batch", 1)
    if not is_int(obj["seq"]) or "rec" not in obj or not is_int(batch) or batch < 1:
        return "record line of the wrong shape"
    if reader._expect >= 0 and obj["seq"] < reader._expect:
        return "seq %r goes backwards (expected %d)" % (obj["seq"], reader._expect)
    if reader._batch_left and batch != 1:
        return "batch starts inside a batch"
    return None


class Replay(list):
    """The records of a journal, with `torn` and `seq` as in JournalReader."""

    torn: "TornTail | None" = None
    seq: "int | None" = None


# ---------------------------------------------------------------- writing

# MicroPython files are not safe to flush while another thread writes to them, and
# there the sync is no faster for it: it runs under the writers' lock.
_SYNC_UNDER_LOCK = shim.MICROPYTHON


class _Held:
    """Stands for a lock this thread holds already: `with` it does nothing."""

    def __enter__(self):
        pass

    def __exit__(self, *exc):
        pass


_HELD = _Held()


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
        # The group commit (_sync_upto), all under _lock:
        self._leading = False  # a thread syncs outside the lock (CPython); one at a time
        self._followers = []  # (seq, lock) of each thread waiting for a sync
        self._standby = None  # the lock of the thread waiting to lead the next sync
        self._due = 0  # how many of the threads the last sync let go are not back yet
        self._sync_time = 0.0  # how long the last sync took: the longest a standby waits
        self._timed = False  # whether syncs are timed (once a thread followed one)
        self._pending = []  # lines left to the next sync to write (_put)
        # What the leader takes once its sync is over: on MicroPython it still holds _lock.
        self._after_sync = _HELD if _SYNC_UNDER_LOCK else self._lock

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
            seq = self._put(record_line(self.seq + 1, body), 1, True)
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
                if len(group) == 1:  # a get or an ack: no batch to mark
                    seq += 1
                    lines.append(record_line(seq, group[0]))
                    continue
                for i in range(len(group)):
                    lines.append(record_line(seq + 1 + i, group[i], len(group) if i == 0 else 1))
                seq += len(group)
            if count:
                lines.append(record_line(seq + 1, bodies[0], count))
                for i in range(1, count):
                    lines.append(record_line(seq + 1 + i, bodies[i]))
            seq = self._put(lines[0] if len(lines) == 1 else b"".join(lines), seq + count - self.seq, durable)
        if durable:
            self._sync_if_due(seq)
        return seq

    def _put(self, data, count, durable):
        """Under the lock: append `data` (`count` records); return the last seq. A thread
        that will wait for a sync that has not begun (one runs, or one stands by) leaves
        its lines to the leader of that sync, which writes them all in one write: one
        system call, not one per thread (each lets CPython's GIL go to another thread)."""
        if durable and self.sync_every is None and (self._leading or self._standby is not None):
            if self._file is None:
                raise ClosedError("%s is closed" % self.path)
            self._pending.append(data)
            self.seq += count
            self.size += len(data)
            return self.seq
        return self._write(data, count)

    def _write(self, data, count):
        """Write under the lock, after the lines left to a sync, without syncing; return
        the last seq written."""
        journal_file = self._file
        if journal_file is None:
            raise ClosedError("%s is closed" % self.path)
        pending = self._pending
        if pending:  # they come first: seqs go up through the file
            self._pending = []
            pending.append(data)
            data_out = b"".join(pending)
        else:
            data_out = data
        try:
            journal_file.write(data_out)
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
        """Return once `seq` is durable: the group commit (CPython; on MicroPython the
        sync holds _lock, so no thread ever waits for another's).

        One thread at a time syncs, the leader, and its sync covers every record written
        before it began. The others wait on a lock of their own that the leader releases
        when its sync is over, then look again. The threads a sync let go are likely to
        append again at once, so the next sync waits for them: one thread stands by until
        the last of them is back (that one releases the standby's lock and leads), or for
        as long as the last sync took if some do not come. So a sync covers all their
        records, not half of them. No polling, no background thread; each append is still
        durable when it returns (bench/bench_ministore.py counts the syncs per append)."""
        back = True
        gate = None
        while True:
            with self._lock:
                if gate is not None and self._standby is gate:  # not all came back: lead without them
                    self._standby = None
                    self._due = 0
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
                    gate = _closed_lock()
                    self._followers.append((seq, gate))
                    wait = -1
                elif self._due:
                    gate = self._standby = _closed_lock()
                    wait = self._sync_time
                else:
                    if self._pending:
                        self._write(b"", 0)  # the lines the others left to this sync
                    standby = self._standby
                    if standby is not None:  # it waited for this thread: now it follows
                        self._standby = None
                        standby.release()
                    self._leading = True
                    journal_file = self._file
                    target = self.seq
                    if _SYNC_UNDER_LOCK:
                        self._sync_file(journal_file, target)
                        return
            if gate is None:
                self._sync_file(journal_file, target)
                return
            try:
                gate.acquire(True, wait)  # a leader releases it, or the last thread back
            except BaseException:  # (KeyboardInterrupt) whoever waits on this thread looks again
                with self._lock:
                    if self._standby is gate:
                        self._standby = None
                        self._due = 0
                    if not self._leading:
                        self._let_go()
                raise
            if self.durable_seq >= seq:
                return  # covered: no need for the lock (CPython only: on MicroPython no one waits)

    def _follow(self, seq):
        """Wait for the running sync to end; self._lock is held on entry and on return."""
        gate = _closed_lock()
        self._followers.append((seq, gate))
        self._lock.release()
        try:
            gate.acquire()  # the leader releases it
        finally:
            self._lock.acquire()

    def _sync_file(self, journal_file, target):
        synced = failed = False
        started = _clock() if self._timed else 0.0
        try:
            journal_file.sync()  # CPython: outside the lock, so that others write meanwhile
            synced = True
        except OSError:
            failed = True
            raise
        finally:  # whatever happened, the followers look again
            with self._after_sync:
                if synced:
                    self.durable_seq = target
                if failed:
                    self._abandon()  # they find the store closed
                self._leading = False
                followers = self._followers
                if followers:  # let go the covered ones; one of the others stands by for the next sync
                    self._sync_time = min(_clock() - started, _MAX_STANDBY)
                    go = [gate for seq, gate in followers if seq <= self.durable_seq]
                    left = [(seq, gate) for seq, gate in followers if seq > self.durable_seq]
                    self._due = len(go) + 1  # this thread too
                    if left:
                        go.append(left.pop()[1])
                    self._followers = left
                else:
                    go = ()
            for gate in go:
                gate.release()

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
        if standby is not None:
            standby.release()

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

    def wait_durable(self, seq):
        """Return once record `seq` (appended with durable=False) is durable, sharing one sync
        with the threads that wrote meanwhile. A store closed since had synced it first;
        ClosedError if it failed or was closed before (miniqueue's concurrent puts)."""
        self._sync_upto(seq)


def _closed_lock():
    gate = shim.allocate_lock()
    gate.acquire()
    return gate


# The group commit's clock (CPython only: a MicroPython sync holds _lock, no one waits).
_clock = getattr(__import__("time"), "perf_counter", None) or (lambda: 0.0)
_MAX_STANDBY = 0.01  # seconds: as jbd2 (Linux's ext4 journal) bounds its own batching wait


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
