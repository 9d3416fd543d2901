"""Host-side (CPython-only) tools for the mini bricks: the `mini` command, and
verify(path) for the same check from Python."""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (dynamic version), `mini --version` prints it


def dump(obj):
    """One record as compact JSON text, non-ASCII kept (what `mini cat` and `mini tail` print)."""
    import json
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class Report:
    """What verify() found: `ok`, `kind` ("journal", "snapshot", "state" or "queue")
    and `problems` (a list of scan.Problem: file, kind, line, offset, length, reason)."""

    def __init__(self, path, kind, problems):
        self.path = path
        self.kind = kind
        self.problems = problems

    @property
    def ok(self):
        return not self.problems

    def __bool__(self):
        return self.ok

    def __str__(self):
        if self.ok:
            return "%s: OK" % self.path
        return "\n".join(str(problem) for problem in self.problems)

    def __repr__(self):
        return "<Report %r %s: %s>" % (self.path, self.kind, "OK" if self.ok else "%d problem%s" % (
            len(self.problems), "" if len(self.problems) == 1 else "s"))


def verify(path):
    """Check a journal, a snapshot, or a state or queue directory, as `mini verify` does.

    Returns a Report (true when nothing is wrong). Raises FormatError for a file that
    is not ours, ValueError for a directory with nothing of ours, OSError for a path
    that is not there.
    """
    import os

    from ministore import FormatError
    from minitools import scan
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    problems = scan.verify_path(path)
    for problem in problems:
        if problem.kind == "error":
            raise FormatError(problem.reason)
    return Report(path, scan.classify(path), problems)
