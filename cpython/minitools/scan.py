"""Whole-file checks for the host tools: every problem of a journal, not only the first.

The core reader (ministore.JournalReader) stops at the first corruption, which is
right for an application. `mini verify` and `mini repair` need the full picture:
scan() goes on after a damaged region and reports each one with its file, line,
byte offset and reason, and which sequence numbers it takes with it.
"""
import os

from ministore import (FormatError, MiniError, FOREIGN, HEADER, PAD, RECORD, check_header, header_line, is_int, parse_line,
                       pad_line, peek_line)
from minisnap import SnapshotError, read_snapshot
from minilog import segment_files, segment_base


class Problem:
    def __init__(self, path, kind, line, offset, length, reason, lost=None):
        self.path = path
        self.kind = kind        # "torn" (an unacknowledged end), "corrupt" or "error"
        self.line = line
        self.offset = offset
        self.length = length    # bytes of the damaged region
        self.reason = reason
        self.lost = lost        # (first, last) seqs the region takes with it, or None

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



def _well_formed(kind, obj):
    """Fields of the types the writers write (an intact line can still be foreign)."""
    if kind == RECORD:
        batch = obj.get("batch", 1)
        return is_int(obj["seq"]) and "rec" in obj and is_int(batch) and batch >= 1
    lost = obj.get("lost")
    return lost is None or (isinstance(lost, list) and len(lost) == 2 and is_int(lost[0]) and
                            is_int(lost[1]) and lost[0] <= lost[1])

def scan(path):
    """Scan a journal line by line; never raises for damage, only for I/O errors."""
    result = JournalScan(path)
    with open(path, "rb") as f:
        data_lines = _lines_with_offsets(f)
        expect = None
        bad = None          # (offset, line, reason, sealed) of the first damaged line since an intact one;
                            # sealed: its CRC matches, so it is corruption even at the end, not a torn tail
        batch = None        # [offset, line, first seq, records left] of a batch not complete
        for offset, number, line in data_lines:
            result.lines = number
            result.size = offset + len(line)
            if number == 1:
                try:
                    base = check_header(path, line, lambda: peek_line(f))
                except FormatError as exc:
                    result.problems.append(Problem(path, "error", 1, 0, len(line), str(exc)))
                    return result
                if base is None:
                    bad = (0, 1, "torn header", False)
                else:
                    result.base_seq = base
                    expect = base + 1
                continue
            if number == 2 and bad is not None:  # a crash leaves a torn header only as the whole file
                bad = (0, 1, "damaged header with more lines after it", True)
            kind, obj = parse_line(line)
            if kind is None:  # a damaged line: obj says why
                if bad is None:
                    bad = (offset, number, str(obj), False)
                continue
            if bad is not None and not bad[3]:  # a sealed line after damage: corruption, as for the reader
                bad = (bad[0], bad[1], bad[2], True)
            if kind == FOREIGN or not isinstance(obj, dict):  # sealed, yet not a line of ours
                if bad is None:
                    bad = (offset, number, str(obj), True)
                continue
            if kind == HEADER:
                damage = "second header"
            elif not _well_formed(kind, obj):
                damage = "%s line of the wrong shape" % ("record" if kind == RECORD else "pad")
            elif kind == RECORD and expect is not None and obj["seq"] < expect:
                damage = "seq %r goes backwards (expected %d)" % (obj["seq"], expect)
            elif kind == RECORD and batch is not None and obj.get("batch", 1) != 1:
                damage = "batch starts inside a batch"
            else:
                damage = None
            if damage is not None:
                if bad is None:
                    bad = (offset, number, damage, True)
                continue
            if kind == PAD:
                result.pads += 1
                lost = obj.get("lost")
                if lost is not None and bad is None:
                    if batch is not None or lost[0] != expect:  # the reader refuses it (FORMAT.md 2.3)
                        bad = (offset, number, "pad with a bad lost range %r" % (lost,), True)
                    else:
                        result.lost.append(tuple(lost))
                        expect = lost[1] + 1
                continue
            seq = obj["seq"]
            if expect is None:  # intact records after a torn header: the header is corrupt
                expect = seq
                result.base_seq = seq - 1
            if bad is not None or seq != expect:
                start = bad if bad is not None else (offset, number, "sequence gap: expected seq %d, found %d" % (expect, seq), True)
                first_lost = expect
                if batch is not None:  # the batch lost a member: move it out whole
                    start = (batch[0], batch[1], start[2] + " (inside the batch at seq %d)" % batch[2], True)
                    first_lost = batch[2]
                    batch = None
                lost = (first_lost, seq - 1) if seq > first_lost else None
                result.problems.append(Problem(path, "corrupt", start[1], start[0], offset - start[0], start[2], lost))
                bad = None
                expect = seq
            expect = seq + 1
            result.records += 1
            if result.first_seq is None:
                result.first_seq = seq
            result.last_seq = seq
            size = obj.get("batch", 1)
            if batch is not None:
                batch[3] -= 1
                if batch[3] == 0:
                    batch = None
            elif size > 1:
                batch = [offset, number, seq, size - 1]
                result.batches += 1
        end = result.size
        start = bad
        if batch is not None:
            reason = "incomplete batch at seq %d" % batch[2]
            if bad is not None and bad[3]:
                reason = "%s (inside the batch at seq %d)" % (bad[2], batch[2])
            start = (batch[0], batch[1], reason, bad is not None and bad[3])
            result.records -= result.last_seq - batch[2] + 1
            result.last_seq = batch[2] - 1 if batch[2] - 1 >= (result.base_seq or 0) + 1 else None
        if start is not None:
            result.problems.append(Problem(path, "corrupt" if start[3] else "torn", start[1], start[0],
                                           end - start[0], start[2]))
        if result.lines == 0:
            result.problems.append(Problem(path, "torn", 1, 0, 0, "empty file (no header)"))
    return result


def _lines_with_offsets(f):
    offset = 0
    number = 0
    for line in iter(f.readline, b""):
        number += 1
        yield offset, number, line
        offset += len(line)


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
    return "%s.removed-at-%d" % (path, problem.offset)


def apply_repair(path, plan):
    """Move each damaged region to a side file, then swap in the repaired journal.

    Crash-safe on the host: side files are written and synced first, the repaired
    journal is written to a temporary file and synced, then os.replace()d over the
    original (atomic on POSIX), and the directory is synced.
    """
    with open(path, "rb") as f:
        data = f.read()
    directory = os.path.dirname(os.path.abspath(path))
    out = []
    at = 0
    sides = []
    for problem, replacement in plan:
        removed = data[problem.offset:problem.offset + problem.length]
        side = side_path(path, problem)
        _write_synced(side, removed)
        sides.append((side, len(removed)))
        out.append(data[at:problem.offset])
        out.append(replacement)
        at = problem.offset + problem.length
    out.append(data[at:])
    tmp = path + ".repair-tmp"
    _write_synced(tmp, b"".join(out))
    os.replace(tmp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return sides


def _write_synced(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# ------------------------------------------------------------------ whole paths

def classify(path):
    """"journal", "snapshot", "state" (a ministate directory), "queue", or raise ValueError."""
    if os.path.isdir(path):
        names = os.listdir(path)
        if any(n.startswith("snap-") for n in names):
            return "state"
        segments = segment_files(path)
        if not segments:
            raise ValueError("%s: no journal segments or snapshots here" % path)
        with open(segments[0][1], "rb") as f:
            for line in f.readlines()[1:3]:
                kind, obj = parse_line(line)
                if kind == RECORD and isinstance(obj, dict) and isinstance(obj["rec"], dict) and (
                        set(obj["rec"]) & {"put", "get", "ack", "nack", "ckpt", "ckpt_end", "drop", "dead", "purge"}):
                    return "queue"
        return "state"
    with open(path, "rb") as f:
        first = f.readline()
    if b'"format":"minisnap"' in first:
        return "snapshot"
    return "journal"


def verify_path(path):
    """[Problem] for a journal, a snapshot, or a state/queue directory."""
    kind = classify(path)
    if kind == "journal":
        return scan(path).problems
    if kind == "snapshot":
        try:
            read_snapshot(path)
            return []
        except (SnapshotError, ValueError) as exc:
            return [Problem(path, "corrupt", 1, 0, os.path.getsize(path), str(exc).split(": ", 1)[-1])]
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
            if kind == "queue":
                from miniqueue import MiniQueue
                MiniQueue.inspect(path)
            else:
                from minisnap import SnapStore, NotFound
                from minilog import read_segments
                try:
                    snap_seq = SnapStore(path).restore()[1]
                except NotFound:
                    snap_seq = 0
                read_segments(path, snap_seq)
        except MiniError as exc:
            problems.append(Problem(path, "corrupt", 0, 0, 0, "%s does not recover: %s" % (kind, exc)))
    return problems
