"""Host-side (CPython-only) tools for the mini bricks: the `mini` command, and
verify(path) for the same check from Python."""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (dynamic version), `mini --version` prints it


class UsageError(Exception):
    """A problem with what the user asked for: `mini` reports it as one line, exit 2."""


def byte_count(text):
    """An argparse type: bytes (0x... accepted), 0 or more."""
    value = int(text, 0)
    if value < 0:
        raise ValueError(text)
    return value


def positive_count(text):
    """An argparse type: an int of 1 or more (a size, a count)."""
    value = int(text, 0)
    if value < 1:
        raise ValueError(text)
    return value


def read_settled(directory, read, suspect=None, tries=20):
    """read() of a state or queue directory (MiniQueue.inspect, StateManager.load, a
    scan of its files), done again if a writer compacted the directory while it read:
    the host tools take no lock, so a removal between their listing and their read gives
    CompactionGap or ENOENT (or, for a scan, a chain that seems broken: suspect(result))
    for a healthy directory, which verify would call damage. A failure with the same
    segments before and after it is the directory's own. Up to `tries` reads: a writer
    that compacts every few milliseconds can overlap several in a row (5 were too few
    for tests/test_cli_live_writer.py on a busy machine: the last one raised ENOENT)."""
    import errno
    import os
    import time
    from minilog import CompactionGap, segment_files

    def listing():
        # The segments, and the newest one's size: a writer that has just created a
        # segment writes its header next, so a read in between finds an empty newest
        # segment ("torn: no header") with the same names before and after it.
        files = segment_files(directory)
        try:
            size = os.path.getsize(files[-1][1]) if files else -1
        except OSError:
            size = -1
        return files, size

    for attempt in range(tries - 1):
        before = listing()
        try:
            result = read()
        except (CompactionGap, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno != errno.ENOENT:
                raise
            if listing() == before:
                raise
            continue
        if suspect is None or not suspect(result):
            return result
        if listing() == before:
            if before[1] != 0 or attempt >= 3:
                return result  # the directory's own
            # An empty newest segment, the same after the read: a writer between creating
            # it and writing its header (preempted on a busy machine), or a crash there.
            # Look again a little later (60 ms in all: a damaged directory's verify must
            # stay quick); if it stays empty, it is reported.
            time.sleep(0.01 * (attempt + 1))
    return read()


def dump(obj):
    """One record as compact JSON text, non-ASCII kept (what `mini cat` and `mini tail` print)."""
    import json
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class Report:
    """What verify() found: `ok`, `kind` ("journal", "snapshot", "state", "queue", or
    "folder" for a directory of them), `problems` (a list of scan.Problem: file, kind,
    line, offset, length, reason) and `journals`: for a folder, or a state or queue
    directory that holds other journals (forward.jsonl), one Report per journal
    checked; empty for a single one."""

    def __init__(self, path, kind, problems, journals=None):
        self.path = path
        self.kind = kind
        self.problems = problems
        self.journals = journals or []

    @property
    def ok(self):
        return not self.problems

    def __bool__(self):
        return self.ok

    def lines(self):
        """The report as `mini verify` prints it: per journal "PATH: OK" or one line per
        problem; a folder's last line counts the journals and the damaged ones."""
        if not self.journals:
            return ["%s: OK" % self.path] if self.ok else [str(problem) for problem in self.problems]
        out = [line for journal in self.journals for line in journal.lines()]
        damaged = sum(1 for journal in self.journals if not journal.ok)
        out.append("%s: %d journal%s checked, %s" % (
            self.path, len(self.journals), "" if len(self.journals) == 1 else "s",
            "all OK" if not damaged else "%d with problems" % damaged))
        return out

    def __str__(self):
        return "\n".join(self.lines())

    def __repr__(self):
        what = "OK" if self.ok else "%d problem%s" % (len(self.problems), "" if len(self.problems) == 1 else "s")
        if self.journals:
            what = "%d journals, %s" % (len(self.journals), what)
        return "<Report %r %s: %s>" % (self.path, self.kind, what)


def verify(path):
    """Check what `mini verify PATH` checks: a journal, a snapshot, a state or queue
    directory, or a folder of them (every journal under it, nested ones too, as
    `mini pull` copies a device's tree).

    Returns a Report (true when nothing is wrong). Raises FormatError when PATH itself
    is not ours (inside a folder, a file that is not ours is that journal's problem,
    of kind "error"), ValueError for a directory with no journal in it, OSError for a
    path that is not there.
    """
    import os

    from minitools import scan
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    found = scan.verify_tree(path)
    if len(found) == 1 and found[0][0] == path:
        return Report(path, found[0][1], found[0][2])
    journals = [Report(target, kind, problems) for target, kind, problems in found]
    kind = found[0][1] if found[0][0] == path else "folder"
    return Report(path, kind, [p for journal in journals for p in journal.problems], journals)
