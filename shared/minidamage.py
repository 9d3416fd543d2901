"""minidamage: the journal format's rules for damage, loaded only when there is some
(issue 14: heap). A line longer than the reader takes at once (a long record, a pad,
or damage) is read in pieces (FORMAT.md 2.2); a damaged first line is told apart from a
file that is not ours by its shape (FORMAT.md 2.1). miniformat imports it when it
needs it; it imports miniformat's names the same way, so neither loads the other first.
"""
import minishim as shim


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
    from miniformat import FORMAT_NAME, FORMAT_VERSION
    return isinstance(obj, dict) and obj.get("format") == FORMAT_NAME and obj.get("version") == FORMAT_VERSION


def nests_deeper_than(line, limit):
    """True if the JSON text `line` opens more than `limit` arrays or objects inside one
    another (brackets inside strings do not count). Asked only when parsing a sealed
    line ran out of heap: a board's parser keeps a stack as deep as the nesting."""
    depth = 0
    in_string = escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte == 0x5B or byte == 0x7B:  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte == 0x5D or byte == 0x7D:  # ] }
            depth -= 1
    return False


class LongDamage:
    """A damaged line longer than the reader takes at once: its length and why, not its bytes."""

    def __init__(self, length, reason):
        self.length = length
        self.reason = reason

    def __len__(self):
        return self.length

    def parsed(self):
        """What parse_line() gives for this line."""
        return None, self.reason


class LongPad:
    """A sealed pad line longer than the reader takes at once, in the shape pad_pieces()
    writes: its length and its fields (the fill of spaces left out), not its bytes."""

    def __init__(self, length, fields):
        self.length = length
        self.fields = fields

    def __len__(self):
        return self.length

    def parsed(self):
        """What parse_line() gives for this line."""
        from miniformat import PAD
        return PAD, self.fields


def read_long(f, line, budget):
    """read_line() for a line longer than `budget` (`line`, its first piece, just read):
    the rest is read in pieces, its CRC computed as they pass, and the line is read
    whole only if it is sealed and not a pad."""
    from miniformat import _SUFFIX_LEN
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
        pad = _long_pad(f, start, length, budget)
        if pad is not None:
            return pad
        f.seek(start)
        return f.read(length)  # sealed: its record is needed whole
    return LongDamage(length, "crc mismatch" if complete else "incomplete line (no newline)")


def _long_pad(f, start, length, budget):
    """A LongPad for the sealed line of `length` bytes at `start` if it is a pad as
    pad_pieces() writes it (a head ending in `"fill":"`, then only spaces up to the `"`
    before the CRC field), else None. Reads the line again in pieces of at most
    `budget` bytes; leaves `f` at its end."""
    from miniformat import _SUFFIX_LEN
    f.seek(start)
    piece = f.read(min(budget, length))
    head = piece.find(b'"fill":"') + 8
    fields = None
    if piece.startswith(b'{"pad":') and head > 8:
        try:
            fields = shim.loads(piece[:head] + b'"}')  # the head, with its fill closed empty
        except (ValueError, RuntimeError):
            pass
    # What parse_line would call a pad: a dict with "pad" and no "seq".
    ours = isinstance(fields, dict) and "pad" in fields and "seq" not in fields
    quote = length - _SUFFIX_LEN - 1  # where the fill's closing quote must be
    done = 0  # bytes of the line before `piece`
    while ours:
        low = max(head - done, 0)
        high = min(len(piece), quote - done)
        if high > low and piece[low:high].strip(b" "):
            ours = False  # a sealed line, but not one pad_pieces() wrote: read it whole
        elif done <= quote < done + len(piece) and piece[quote - done] != 34:  # '"'
            ours = False
        done += len(piece)
        if done >= length or not piece:
            break
        piece = f.read(min(budget, length - done))
    if not ours or done != length:
        return None
    assert isinstance(fields, dict)
    fields.pop("fill", None)
    return LongPad(length, fields)
