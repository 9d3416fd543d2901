"""miniformat: the journal's line format (FORMAT.md 1 and 2): the errors the bricks
raise, exact JSON encoding, sealing a line with its CRC, parsing a line, checking the
header, and reading one line in bounded heap (a long line, and a damaged header, are
minidamage's, imported when met). ministore re-exports every public name here.
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
# MicroPython's readline(size) allocates `size` bytes before it reads one: at 4 KB, every
# line needed a 4 KB hole, and a fragmented 128 KB heap often has none (MemoryError).
_LINE_BUDGET = 512 if shim.MICROPYTHON else MAX_LINE
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
_BIG_BITS = 64  # a name, not a literal: mpy-cross would fold a literal into a big-int constant
try:
    _BIG = 1 << _BIG_BITS  # below it an int is short enough without comparing it to the limit
except OverflowError:  # a port without big ints: every int is below any bound
    _BIG = _INF
# [10 ** _INT_DIGITS] (the smallest int of _INT_DIGITS + 1 digits), made when the first
# int of 2 ** 64 or more is checked: it is 1.8 KB of heap, which most apps never need.
_INT_LIMIT = []


def _int_limit():
    if not _INT_LIMIT:
        _INT_LIMIT.append(10 ** _INT_DIGITS)
    return _INT_LIMIT[0]


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
        if -_small < value < _small or -_BIG < value < _BIG or -_int_limit() < value < _int_limit():
            return
        raise ValueError("ints of more than %d digits are refused: CPython 3.11+ cannot read them back, "
                         "so the journal would not read on every host (store a string instead)" % _INT_DIGITS)
    if isinstance(value, float):
        if value != value or value in (_INF, -_INF):
            raise ValueError("JSON cannot store %r" % value)
        return
    if kind is dict:  # not a subclass (a Counter, a defaultdict): it reads back as a plain dict
        for key in value:
            if not isinstance(key, str):
                raise TypeError("JSON object keys must be str, not %s" % type(key).__name__)
            check_value(value[key], depth + 1)
        return
    if kind is list:
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
def may_hold_float(body):
    """False if `body` holds no float: a float in our JSON has a digit just before its
    "." or "e", so a body without any such pair needs no settling (a scan, not a parse)."""
    for mark in (b".", b"e"):
        at = body.find(mark, 1)
        while at > 0:
            if 48 <= body[at - 1] <= 57:  # a digit
                return True
            at = body.find(mark, at + 1)
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


def seal_pieces(head, body):
    """seal(head + body) as [head, body, tail]: the same bytes, to write one after another,
    without a copy of `body`. `body` may also be a list of pieces that stand in its place."""
    parts = body if isinstance(body, list) else [body]
    crc = shim.crc32(head)
    for part in parts:
        crc = shim.crc32(part, crc)
    return [head] + parts + [b'%s%08x"}\n' % (_CRC_TAG, crc & 0xFFFFFFFF)]


def header_line(base_seq):
    return seal(b'{"format":"%s","version":%d,"base_seq":%d' % (
        FORMAT_NAME.encode(), FORMAT_VERSION, base_seq))


def record_line(seq, body, batch=1, _crc32=shim.crc32, _longest=MAX_LINE - 64):
    """The sealed line of record `body` (encoded) at `seq`; `batch` on a batch's first line.
    The underscore arguments are not for callers: locals, as in check_value (every
    record's line is made here)."""
    if len(body) > _longest:  # room for the seq, batch and CRC around it
        raise _too_long(body)
    if batch > 1:
        line = b'{"seq":%d,"batch":%d,"rec":%s' % (seq, batch, body)
    else:
        line = b'{"seq":%d,"rec":%s' % (seq, body)
    return b"%s,\"crc\":\"%08x\"}\n" % (line, _crc32(line) & 0xFFFFFFFF)  # seal(line), without a call


def length_of(data):
    """The bytes data holds: a bytes-like object, or a list of pieces (their concatenation)."""
    return sum(len(piece) for piece in data) if isinstance(data, list) else len(data)


def record_pieces(seq, body, batch=1):
    """record_line() as [head, body, tail]: the same bytes, `body` itself among them, not
    copied into a line (twice: the line, then its sealed copy). A board's heap may have
    no free block as large as a 4 KB record, let alone three."""
    if len(body) > MAX_LINE - 64:
        raise _too_long(body)
    if batch > 1:
        return seal_pieces(b'{"seq":%d,"batch":%d,"rec":' % (seq, batch), body)
    return seal_pieces(b'{"seq":%d,"rec":' % seq, body)


def _too_long(body):
    return ValueError("a record of %d bytes is longer than a journal line may be (%d bytes)" % (
        len(body), MAX_LINE))


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
    if line.__class__ is not bytes and not isinstance(line, (bytearray, memoryview)):
        return line.parsed()  # a minidamage.LongDamage or LongPad: a line too long to hold
    if line[-1:] != b"\n":
        return None, "incomplete line (no newline)"
    if len(line) < _SUFFIX_LEN + 2 or line[-_SUFFIX_LEN:-11] != _CRC_TAG or line[-3:] != b'"}\n':
        return None, "line has no crc field"
    # Compared as text: int(x, 16) would also take " 1a4b49f", "+1a4b49f" or "1_a4b49f".
    # Through a view: a slice would copy the line (a whole snapshot, say) on the heap.
    if b"%08x" % (shim.crc32(memoryview(line)[:-_SUFFIX_LEN]) & 0xFFFFFFFF) != line[-11:-3]:
        import minidamage  # lazy: only for a damaged line
        return None, "crc mismatch" if minidamage.has_crc_shape(line) else "crc field is not 8 lowercase hex digits"
    try:
        obj = shim.loads(line)
    except (ValueError, RuntimeError):  # RuntimeError: nested too deep for this runtime
        return FOREIGN, "crc matches but the line is not JSON this runtime parses"
    except MemoryError:
        # A board's parser may run out of heap on a line nested thousands deep: no
        # writer writes one (FORMAT.md 1), so it is foreign, not a reason to fail every
        # open. A line nested as records are needs this heap: the error stands.
        import minidamage
        if not minidamage.nests_deeper_than(line, MAX_DEPTH + 2):
            raise
        return FOREIGN, "crc matches but the line nests deeper than any writer nests"
    if not isinstance(obj, dict):
        return FOREIGN, "crc matches but the line is not a JSON object"
    if "seq" in obj:
        return RECORD, obj
    if "pad" in obj:
        return PAD, obj
    if "format" in obj:
        return HEADER, obj
    return FOREIGN, "line is neither a record, a pad nor a header"


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
        import minidamage  # lazy: only for a damaged first line
        if (minidamage.is_torn_header(line) or minidamage._names_us(line) or
                (peek is not None and parse_line(peek())[0] is not None)):
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


def read_line(f, budget=_LINE_BUDGET):
    """The next line of `f` (b"" at the end), a LongDamage for a damaged line longer
    than `budget`, or a LongPad for a pad line longer than that: such a line is read
    in pieces, its CRC computed as they pass, and read whole only if it is sealed
    (FORMAT.md 1) and not a pad (a pad is as long as the damage it covers), so heap
    stays bounded by the largest record whatever the size of the damage."""
    line = f.readline(budget)
    if len(line) < budget or line[-1:] == b"\n":
        return line
    import minidamage  # lazy: a line longer than a piece is rare (a long record, or damage)
    return minidamage.read_long(f, line, budget)


def peek_line(f):
    """The next line of file `f`, leaving its position where it was."""
    at = f.tell()
    line = read_line(f)
    f.seek(at)
    return line


def is_int(value) -> "TypeGuard[int]":
    """An int that is not a bool (MicroPython's bool is not an int subclass; CPython's is)."""
    return isinstance(value, int) and not isinstance(value, bool)

