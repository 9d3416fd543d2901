"""minisnap: atomic snapshots of a JSON state (SnapStore). On-disk format: FORMAT.md, section 3."""
#
# Nothing here ever renames a file: on FAT a rename is two directory writes and a
# power cut between them can lose both names. Each snapshot is written under a new
# name and is valid only when its CRC checks; removing an old one is safe to cut at
# any point.
import minishim as shim
from ministore import MiniError, FormatError, encode_json, seal_pieces, parse_line, is_int

TYPE_CHECKING = False  # pyright takes it as True: annotations only, never imported at run time
if TYPE_CHECKING:
    from typing import Any

SNAP_FORMAT = "minisnap"
SNAP_VERSION = 1
try:
    from micropython import const  # pyright: ignore[reportMissingImports]
except ImportError:  # CPython: const("snap-") is the str itself
    from builtins import str as const
# const(): MicroPython's compiler puts the value where the name is used, and no global
# (a slot in this module's dict on a board's heap).
_SNAP_PREFIX = const("snap-")
_SNAP_SUFFIX = const(".json")
del const


class NotFound(MiniError):
    """There is no valid snapshot."""


class SnapshotError(MiniError):
    """A snapshot file is damaged or not a snapshot."""


# On MicroPython a snapshot is encoded, written and read a piece at a time (minisnapio,
# loaded at the first snapshot): a board's heap may have no free block as large as the
# state's JSON. CPython keeps its one-call encoder and parser.
_IN_PIECES = shim.MICROPYTHON


def encode_state(state, settle_floats=False) -> "tuple[Any, list[bytes]]":
    """(state, pieces): encode_json(state) as a list of bytes to write one after another.

    On MicroPython, a dict or list state is encoded member by member and the members
    joined in runs of about 512 bytes: no piece is longer than that or than one member.
    settle_floats: a member whose text holds a float is replaced, in `state`, by what that
    text parses back to (settle()), so the state is what its snapshot restores to; a
    state that is not a dict or list comes back as a new object. Without it, a float
    that does not read back exactly is refused (ValueError).
    """
    if not (shim.MICROPYTHON or _IN_PIECES):  # shim.MICROPYTHON: ministore.FLOAT_TEXT_INEXACT
        return state, [encode_json(state)]
    import minisnapio  # lazy: MicroPython's snapshots
    return minisnapio.encode_state(state, settle_floats, _IN_PIECES)


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
    obj = None
    if _IN_PIECES:
        import minisnapio  # lazy: MicroPython's snapshots
        obj = minisnapio.read_sealed(path)
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

        state_json: encode_json(state), or encode_state(state)[1], when the caller has
        already encoded it.
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
        found = None
        for number, path in reversed(self.files()):
            if found is not None:
                # An older one: a foreign file is refused now (FORMAT.md 3), not first by
                # the next snapshot's prune. Read whole only if its head is not ours.
                with open(path, "rb") as f:
                    if f.read(len(_SNAP_FIXED)) == _SNAP_FIXED:
                        continue
            try:
                got = read_snapshot(path)  # FormatError: not ours
            except (SnapshotError, ValueError) as exc:
                if found is None:
                    self.skipped.append((path, str(exc)))
                continue
            if found is None:
                found = got
        self.fell_back = bool(self.skipped)
        if found is None:
            raise NotFound("no valid snapshot in %s" % self.directory)
        return found

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
