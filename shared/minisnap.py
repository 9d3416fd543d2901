"""minisnap: atomic snapshots of a JSON state (SnapStore). On-disk format: FORMAT.md, section 3."""
#
# Nothing here ever renames a file: on FAT a rename is two directory writes and a
# power cut between them can lose both names. Each snapshot is written under a new
# name and is valid only when its CRC checks; removing an old one is safe to cut at
# any point.
import minishim as shim
from ministore import (MiniError, FormatError, encode_json, seal_pieces, parse_line, is_int, settle,
                       may_hold_float, FLOAT_TEXT_INEXACT)
from miniformat import _CRC_TAG, _SUFFIX_LEN

SNAP_FORMAT = "minisnap"
SNAP_VERSION = 1
_SNAP_PREFIX = "snap-"
_SNAP_SUFFIX = ".json"


class NotFound(MiniError):
    """There is no valid snapshot."""


class SnapshotError(MiniError):
    """A snapshot file is damaged or not a snapshot."""


# On MicroPython a snapshot is encoded, written and read a piece at a time: the heap of a
# board is fragmented by the app's own long-lived objects (a 100-key state's keys, made
# between collections, lie about 800 bytes apart on a 96 KB heap), so it may have no free
# block as large as the state's JSON even with most of it free. CPython has no such limit
# and keeps its one-call encoder and parser.
_IN_PIECES = shim.MICROPYTHON
_RUN = 512  # bytes of members joined into one piece


def encode_state(state, settle_floats=False):
    """(state, pieces): encode_json(state) as a list of bytes to write one after another.

    On MicroPython, a dict or list state is encoded member by member and the members
    joined in runs of about _RUN bytes: no piece is longer than that or than one member.
    settle_floats: a member whose text holds a float is replaced, in `state`, by what that
    text parses back to (settle()), so the state is what its snapshot restores to; a
    state that is not a dict or list comes back as a new object. Without it, a float
    that does not read back exactly is refused (ValueError).
    """
    if not (_IN_PIECES and isinstance(state, (dict, list))):
        body = encode_json(state)
        if FLOAT_TEXT_INEXACT and may_hold_float(body):
            state, body = _read_back(state, body, settle_floats)
        return state, [body]
    is_dict = isinstance(state, dict)
    pieces = []
    settled = []  # (key, value): put in `state` once every member is stored, or none is
    run = [b"{" if is_dict else b"["]
    size = 1
    for at, key in enumerate(state):
        if is_dict:
            if not isinstance(key, str):
                raise TypeError("JSON object keys must be str, not %s" % type(key).__name__)
            value = state[key]
            head = b"%s%s:" % (b"," if at else b"", shim.dumps(key).encode())
        else:
            value, key = key, at
            head = b"," if at else b""
        body = encode_json(value, 1)
        if FLOAT_TEXT_INEXACT and may_hold_float(body):
            value, body = _read_back(value, body, settle_floats)
            if settle_floats:
                settled.append((key, value))
        run.append(head)
        size += len(head)
        if len(body) < _RUN:
            run.append(body)
            size += len(body)
        if size >= _RUN or len(body) >= _RUN:
            pieces.append(b"".join(run))
            run, size = [], 0
            if len(body) >= _RUN:
                pieces.append(body)
    run.append(b"}" if is_dict else b"]")
    pieces.append(b"".join(run))
    for key, value in settled:
        state[key] = value
    return state, pieces


def _read_back(value, body, settle_floats):
    """(value, body) as restore() gives them back: settled, or refused if they differ."""
    if settle_floats:
        body = settle(body)
        return shim.loads(body), body
    if shim.loads(body) != value:
        # restore() would not give back this state (StateManager settles its state first).
        raise ValueError("the state holds a float that this runtime does not "
                         "read back exactly; store it as an int or a string")
    return value, body


def snapshot_bytes(state, seq, state_json=None):
    """The snapshot file's bytes; state_json is encode_json(state), if the caller has it already."""
    return b"".join(snapshot_pieces(state, seq, state_json))


def snapshot_pieces(state, seq, state_json=None):
    """snapshot_bytes() as [head, the state's JSON in pieces..., tail], written one after
    another. state_json: encode_state(state)[1] (or encode_json(state)), when the
    caller has it already."""
    if state_json is None:
        state_json = encode_state(state)[1]
    return seal_pieces(b'{"format":"%s","version":%d,"seq":%d,"state":' % (
        SNAP_FORMAT.encode(), SNAP_VERSION, seq), state_json)


_SNAP_FIXED = b'{"format":"minisnap","version":1,"seq":'


def is_torn_snapshot(data):
    """True if `data` (a whole file) is what create() can leave when a crash cuts it
    short, or a snapshot of ours damaged since (FORMAT.md 3): anything else in a
    snapshot's name is not ours, and is never removed.

    That is: `data`, with any 0x00 bytes at its end removed, is a prefix of
    `{"format":"minisnap","version":1,"seq":<digits>,"state":` followed by anything;
    or it is one line that ends as a sealed line does.
    """
    end = len(data)
    while end and data[end - 1] == 0:
        end -= 1
    fixed = len(_SNAP_FIXED)
    if data[:min(end, fixed)] == _SNAP_FIXED[:end]:
        if end <= fixed:
            return True
        at = fixed
        while at < end and 48 <= data[at] <= 57:
            at += 1
        tail = b',"state":'
        if at == end or (at > fixed and data[at:min(end, at + len(tail))] == tail[:end - at]):
            return True
    import minidamage  # lazy: only for a damaged snapshot
    return data.count(b"\n") == 1 and minidamage.has_crc_shape(data)


def read_snapshot(path):
    """Return (state, seq) from a snapshot file; raise SnapshotError if it is damaged,
    FormatError if it is not a snapshot of ours or of a version this code reads."""
    obj = _read_sealed(path) if _IN_PIECES else None
    if obj is None:  # read whole: not sealed as we seal (or on CPython), and to say why
        with open(path, "rb") as f:
            data = f.read()
        kind, obj = parse_line(data) if data.count(b"\n") == 1 else (None, "not exactly one line (torn or damaged)")
    if isinstance(obj, dict):
        if obj.get("format") != SNAP_FORMAT:
            raise FormatError("%s: not a minisnap snapshot (format %r)" % (path, obj.get("format")))
        if obj.get("version") != SNAP_VERSION:
            raise FormatError("%s: snapshot version %r is not supported (this code reads %d)" % (
                path, obj.get("version"), SNAP_VERSION))
        seq = obj.get("seq")
        if not is_int(seq) or seq < 0 or "state" not in obj:
            raise FormatError("%s: sealed, yet no valid seq or state: not written by minisnap" % path)
        return obj["state"], seq
    if not is_torn_snapshot(data):
        raise FormatError("%s: not a minisnap snapshot" % path)
    raise SnapshotError("%s: %s" % (path, obj))


def _read_sealed(path):
    """The JSON object of a snapshot file that is one line with a matching CRC field, read
    without holding the file: its CRC checked _RUN bytes at a time, then parsed from the
    file. None for anything else."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        crc = 0
        left = size - _SUFFIX_LEN
        while left > 0:
            chunk = f.read(min(left, _RUN))
            if not chunk or b"\n" in chunk:
                return None
            crc = shim.crc32(chunk, crc)
            left -= len(chunk)
        tail = f.read()
        if left < 0 or tail != b'%s%08x"}\n' % (_CRC_TAG, crc & 0xFFFFFFFF):
            return None
        f.seek(0)
        try:
            obj = shim.json.load(f) if shim.MICROPYTHON else shim.loads(f.read())
        except (ValueError, RuntimeError):  # RuntimeError: nested too deep for this runtime
            return None
    # The rest, read whole, gets parse_line()'s verdict.
    return obj if isinstance(obj, dict) and ("format" in obj or "seq" in obj or "pad" in obj) else None


class SnapStore:
    """Snapshots of a state in `directory`, newest `keep` valid ones kept.

    After restore(), `skipped` lists (path, reason) for every newer snapshot that was
    damaged and passed over, and `fell_back` is True if there was any.
    """

    def __init__(self, directory, keep=2):
        if not is_int(keep) or keep < 1:
            raise ValueError("keep must be an int >= 1")
        self.directory = shim.fspath(directory)
        self.keep = keep
        self.skipped = []
        self.fell_back = False

    def files(self):
        return shim.numbered_files(self.directory, _SNAP_PREFIX, _SNAP_SUFFIX)

    def create(self, state, seq, state_json=None):
        """Write a snapshot of `state` at `seq`; durable before it returns. Returns its path.

        state_json: encode_json(state), when the caller has already encoded it.
        """
        if not is_int(seq) or seq < 0:
            raise ValueError("seq must be an int >= 0")
        data = snapshot_pieces(state, seq, state_json)  # validates the state before touching the disk
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
