"""Whole-file checks for the host tools: every problem of a journal, not only the first.

The core reader (ministore.JournalReader) stops at the first corruption, which is
right for an application. `mini verify` and `mini repair` need the full picture:
scan() runs the same reader with a reporter, so it goes on after a damaged region
and reports each one with its file, line, byte offset and reason, and which
sequence numbers it takes with it. There is no second parser of the format here.
"""
import os
import tempfile

import minishim
from ministore import FormatError, JournalReader, MiniError, RECORD, header_line, parse_line, pad_line
from miniformat import MAX_LINE
from minisnap import SnapshotError, read_snapshot
from minilog import segment_files, segment_base
from minitools import read_settled


class Problem:
    def __init__(self, path, kind, line, offset, length, reason, lost=None):
        self.path = path
        self.kind = kind        # "torn" (an unacknowledged end), "corrupt" or "error"
        self.line = line
        self.offset = offset
        self.length = length    # bytes of the damaged region
        self.reason = reason
        self.lost = lost        # (first, last) seqs the region takes with it, or None

    def __repr__(self):
        return "Problem(%r, %r, line=%d, offset=%d, length=%d, reason=%r%s)" % (
            self.path, self.kind, self.line, self.offset, self.length, self.reason,
            ", lost=%r" % (self.lost,) if self.lost else "")

    def as_dict(self):
        out = {"file": self.path, "kind": self.kind, "line": self.line, "offset": self.offset,
               "length": self.length, "reason": self.reason}
        if self.lost:
            out["lost_seqs"] = list(self.lost)
        return out

    def __str__(self):
        where = "%s: line %d (byte offset %d, %d bytes)" % (self.path, self.line, self.offset, self.length)
        lost = ""
        if self.lost:
            lost = "; seq %d..%d" % self.lost if self.lost[0] != self.lost[1] else "; seq %d" % self.lost[0]
        return "%s: %s: %s%s" % (where, self.kind, self.reason, lost)


class JournalScan:
    """Everything scan() learned about one journal."""

    def __init__(self, path):
        self.path = path
        self.problems = []
        self.records = 0
        self.base_seq: int | None = None
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.size = 0
        self.lines = 0
        self.pads = 0
        self.batches = 0
        self.lost = []

    @property
    def ok(self):
        return not self.problems



class _Collector:
    """The reader's reporter: keeps every damaged region as a Problem."""

    def __init__(self, path):
        self.path = path
        self.problems = []

    def report(self, kind, line, offset, length, reason, lost):
        self.problems.append(Problem(self.path, kind, line, offset, length, reason, lost))


def scan(path):
    """Read a journal to its end with the core's reader, reporting every damaged region
    instead of stopping at the first; never raises for damage, only for I/O errors."""
    result = JournalScan(path)
    collector = _Collector(path)
    reader = JournalReader(path, reporter=collector)
    try:
        for seq, _ in reader:
            result.records += 1
            if result.first_seq is None:
                result.first_seq = seq
            result.last_seq = seq
    except FormatError as exc:
        result.problems.append(Problem(path, "error", 1, 0, reader.size, str(exc)))
        return result
    result.problems = collector.problems
    result.base_seq = reader.base_seq
    result.size = reader.size
    result.lines = reader.lines
    result.pads = reader.pads
    result.batches = reader.batches
    result.lost = reader.lost
    return result


def repair_plan(result):
    """[(problem, replacement bytes)] that make the journal readable again, keeping its seqs."""
    plan = []
    for problem in result.problems:
        if problem.line == 1 and result.base_seq is None:
            return None  # nothing intact to keep; the writer rebuilds the header itself
        if problem.kind == "corrupt":
            replacement = pad_line(problem.length, "repaired", problem.lost)
            if problem.offset == 0:  # a damaged header: a new one, numbered from the records after it
                replacement = header_line(result.base_seq) + replacement
            plan.append((problem, replacement))
        elif problem.kind == "torn":
            plan.append((problem, b""))
    return plan


def side_path(path, problem):
    """Where the bytes of `problem` go: JOURNAL.removed-at-OFFSET, or with .1, .2... after
    it when that name is taken (an earlier repair at the same offset): never over a file."""
    base = "%s.removed-at-%d" % (path, problem.offset)
    name, n = base, 0
    while os.path.lexists(name):
        n += 1
        name = "%s.%d" % (base, n)
    return name


def apply_repair(path, plan):
    """Move each damaged region to a side file, then swap in the repaired journal.

    Crash-safe on the host: side files are written and synced first, the repaired
    journal is written to a new temporary file and synced, then os.replace()d over the
    original (atomic on POSIX), and the directory is synced. No existing file is ever
    written to or through (O_EXCL: not a side file of an earlier repair, not a symlink
    planted where one goes). The journal keeps its mode and, where this user may set it,
    its owner; a symlinked journal is repaired where it points. A journal with other hard
    links is refused: replacing it would leave them the damaged copy.
    """
    path = os.path.realpath(path)
    st = os.stat(path)
    if st.st_nlink > 1:
        raise ValueError("%s has %d hard links: a repair would leave the others damaged; "
                         "repair a copy" % (path, st.st_nlink))
    with open(path, "rb") as f:
        data = f.read()
    directory = os.path.dirname(path)
    out = []
    at = 0
    sides = []
    for problem, replacement in plan:
        removed = data[problem.offset:problem.offset + problem.length]
        side = _write_new(lambda: side_path(path, problem), removed, st)
        sides.append((side, len(removed)))
        out.append(data[at:problem.offset])
        out.append(replacement)
        at = problem.offset + problem.length
    out.append(data[at:])
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".repair-", dir=directory)
    try:
        _fill(fd, b"".join(out), st)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    minishim.sync_dir(directory)
    return sides


def _write_new(name, data, st):
    """Write `data` to a new file (a fresh name from name() if it is taken meanwhile)."""
    while True:
        path = name()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        _fill(fd, data, st)
        return path


def _fill(fd, data, st):
    """Write, take the journal's mode and owner, sync, close."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]  # a write may take less than all of it
        os.fchmod(fd, st.st_mode & 0o7777)
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
        except OSError:
            pass  # not ours to give away: the file stays this user's
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ whole paths

def journal_files(path):
    """The journal files behind `path`: the file itself, or a directory's segments in
    order. ValueError (one line) if there is none."""
    if os.path.isdir(path):
        found = [p for _, p in segment_files(path)]
        if not found:
            raise ValueError("%s: no journal segments (journal-NNNNNNNN.jsonl) here" % path)
        return found
    if not os.path.exists(path):
        raise ValueError("%s: no such file or directory" % path)
    return [path]


def _is_brick_dir(directory, names):
    """A state or queue directory: it holds journal segments or snapshots (FORMAT.md 4, 5)."""
    return bool(segment_files(directory)) or any(n.startswith("snap-") and n.endswith(".json") for n in names)


def journal_targets(path):
    """What `mini verify PATH` checks, in order: PATH itself when it is a file or a state
    or queue directory, otherwise every one under it (as `mini pull` copies a device's
    tree): each state or queue directory (its segments and snapshots checked together)
    and each other `*.jsonl` file (plain journals, `forward.jsonl`). ValueError (one
    line) when there is none. Symbolic links to directories are not followed."""
    if not os.path.isdir(path):
        if not os.path.exists(path):
            raise ValueError("%s: no such file or directory" % path)
        if not os.path.isfile(path):
            raise ValueError("%s: not a regular file (a FIFO or a device?)" % path)
        return [path]
    targets = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        segments = set()
        if _is_brick_dir(root, names):
            targets.append(root)
            segments = set(os.path.basename(p) for _, p in segment_files(root))
        # regular files only: a FIFO or device named *.jsonl would block the read, or never end
        targets += [os.path.join(root, n) for n in sorted(names) if n.endswith(".jsonl") and n not in segments
                    and os.path.isfile(os.path.join(root, n))]
    if not targets:
        raise ValueError("%s: no journals (*.jsonl), snapshots, or state or queue directories here" % path)
    return targets


def verify_tree(path):
    """[(target, kind, problems)] for every target of journal_targets(path).

    A target that is not ours (a problem of kind "error") is refused with FormatError
    when it is PATH itself, as a file named on its own is; found inside a folder it is
    that target's problem, and the walk goes on."""
    out = []
    for target in journal_targets(path):
        kind = classify(target)
        problems = verify_path(target)
        for problem in problems:
            if problem.kind == "error" and target == path:
                raise FormatError(problem.reason)
        out.append((target, kind, problems))
    return out


def classify(path):
    """"journal", "snapshot", "state" (a ministate directory), "queue", or raise ValueError."""
    if os.path.isdir(path):
        return read_settled(path, lambda: _classify_directory(path))  # it opens a segment a writer may remove
    name = os.path.basename(path)
    if name.startswith("snap-") and name.endswith(".json"):
        return "snapshot"  # even cut short before its format name
    with open(path, "rb") as f:
        first = f.readline(4096)  # a header is short; a file of zeros has no newline at all
    if b'"format":"minisnap"' in first:
        return "snapshot"
    return "journal"


def _classify_directory(path):
    names = os.listdir(path)
    if any(n.startswith("snap-") for n in names):
        return "state"
    segments = segment_files(path)
    if not segments:
        raise ValueError("%s: no journal segments or snapshots here" % path)
    with open(segments[0][1], "rb") as f:
        lines = [f.readline(MAX_LINE) for _ in range(3)][1:]  # bounded: not a whole segment, nor a damaged GB
        for line in lines:
            kind, obj = parse_line(line)
            if kind == RECORD and isinstance(obj, dict) and isinstance(obj["rec"], dict) and (
                    set(obj["rec"]) & {"put", "get", "ack", "nack", "ckpt", "ckpt_end", "drop", "dead", "purge"}):
                return "queue"
    return "state"


def verify_path(path):
    """[Problem] for a journal, a snapshot, or a state/queue directory."""
    kind = classify(path)
    if kind == "journal":
        return scan(path).problems
    if kind == "snapshot":
        try:
            read_snapshot(path)
            return []
        except FormatError as exc:  # not ours: never called damage
            return [Problem(path, "error", 1, 0, os.path.getsize(path), str(exc))]
        except (SnapshotError, ValueError) as exc:
            return [Problem(path, "corrupt", 1, 0, os.path.getsize(path), str(exc).split(": ", 1)[-1])]
    return read_settled(path, lambda: _verify_directory(path, kind), lambda problems: problems)


def _verify_directory(path, kind):
    problems = []
    previous_last = None
    for number, segment in segment_files(path):
        result = scan(segment)
        problems.extend(result.problems)
        base = segment_base(segment) if result.base_seq is not None else None
        if previous_last is not None and base is not None and base != previous_last:
            problems.append(Problem(segment, "corrupt", 1, 0, 0,
                                    "segment starts after seq %d but the one before ends at seq %d" % (base, previous_last)))
        previous_last = result.last_seq if result.last_seq is not None else base
    for name in sorted(os.listdir(path)):
        if name.startswith("snap-") and name.endswith(".json"):
            problems.extend(verify_path(os.path.join(path, name)))
    if not any(p.kind != "torn" for p in problems):
        # The files are sound one by one, or only torn (which opening cuts): do they
        # fit together? A torn header can still make the directory refuse to open.
        try:
            recovers(path, kind)
        except MiniError as exc:
            problems.append(Problem(path, "corrupt", 0, 0, 0, "%s does not recover: %s" % (kind, exc)))
    return problems


def recovers(directory, kind):
    """What a state or queue directory recovers to, read-only, as a line of text; the
    brick's error (MiniError) if it would not open. Damaged snapshots are skipped, as
    restore skips them."""
    if kind == "queue":
        from miniqueue import MiniQueue
        q = read_settled(directory, lambda: MiniQueue.inspect(directory))
        return "queue at seq %d: %d ready, %d in flight, %d dead, %d dropped" % (
            q.last_seq, len(q), q.in_flight(), len(q.dead()), q.dropped)
    from minisnap import SnapStore, NotFound
    from minilog import read_segments

    def read():
        try:
            snap_seq = SnapStore(directory).restore()[1]
        except NotFound:
            snap_seq = 0
        return snap_seq, read_segments(directory, snap_seq)
    snap_seq, last = read_settled(directory, read)
    return "state at seq %d (from the snapshot at seq %d)" % (last, snap_seq)
