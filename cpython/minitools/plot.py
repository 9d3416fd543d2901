"""`mini plot JOURNAL --field temp_c [--x seq|FIELD] [--out temp_c.png]`: a field of a journal's records, drawn.

People would rather look at a sensor log than read it. The journal is read with
the core's reader (MiniStore.stream), so a torn tail is skipped and reported, and a
corrupt journal is refused, as `mini cat` does. matplotlib is an optional extra:
`pip install 'mini-bricks[plot]'`.

FIELD is a key of the records, or a dotted path into them (`put.temp_c`); a plain
key that is not at the top level is looked for in nested objects too, so that
`--field temp_c` finds it in a queue's `{"put": {"temp_c": 21}}`. Records without a
number there (ints or floats; not booleans) are skipped and counted. The x axis is
the record's seq, or with `--x FIELD` another field: numbers, or ISO 8601 strings
(dates and times).
"""
import datetime
import os
import sys

from ministore import MiniStore
from minitools.scan import journal_files


class PlotError(Exception):
    """One line on stderr, exit 2."""


_MISSING = object()


def field_value(record, path):
    """The value at path (a key, or 'a.b.c') in record; a plain key is also looked for in nested objects."""
    value = record
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        else:
            value = _MISSING
            break
    if value is _MISSING and "." not in path:
        value = _nested(record, path, 0)
    return value


def _nested(value, key, depth):
    if depth > 32:
        return _MISSING
    if isinstance(value, dict):
        if key in value:
            return value[key]
        children = list(value.values())
    elif isinstance(value, list):
        children = value
    else:
        return _MISSING
    for child in children:
        found = _nested(child, key, depth + 1)
        if found is not _MISSING:
            return found
    return _MISSING


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _x_value(value):
    if _number(value):
        return value
    if isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return _MISSING
    return _MISSING


def journals(path):
    """The journal files behind path: the file itself, or a directory's segments in order."""
    try:
        return journal_files(path)
    except ValueError as exc:
        raise PlotError(str(exc))


def points(path, field, x="seq", warn=None):
    """([x], [y], skipped): the records of path that have a number at field (and a usable x)."""
    xs, ys, skipped = [], [], 0
    for journal in journals(path):
        reader = MiniStore.stream(journal)
        for seq, record in reader:
            y = field_value(record, field)
            at = seq if x == "seq" else _x_value(field_value(record, x))
            if not _number(y) or at is _MISSING:
                skipped += 1
                continue
            xs.append(at)
            ys.append(y)
        if reader.torn is not None and warn is not None:
            warn("%s: torn tail skipped at byte %d (%s)" % (journal, reader.torn.offset, reader.torn.reason))
    return xs, ys, skipped


def _is_png(path):
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False


def plot(path, field, x="seq", out=None, title=None, warn=None):
    """Draw field over x from the journal (or directory) at path into the PNG out.

    Returns (out, number of points, skipped records, the matplotlib Line2D).
    """
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("plotting needs matplotlib: pip install 'mini-bricks[plot]' (or pip install matplotlib)")
    xs, ys, skipped = points(path, field, x, warn)
    if not ys:
        raise PlotError("%s: no record has a number at %r%s" % (
            path, field, "" if x == "seq" else " with a number or an ISO 8601 time at %r" % x))
    out = out or field.replace(".", "_").replace(os.sep, "_") + ".png"
    if os.path.exists(out) and not _is_png(out):  # the journal itself, say (--out J): never overwritten
        raise PlotError("%s exists and is not a PNG: not overwritten (give another --out)" % out)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    try:
        (line,) = ax.plot(xs, ys, marker="." if len(ys) <= 500 else None, linewidth=1)
        ax.set_xlabel(x)
        ax.set_ylabel(field)
        ax.set_title(title or "%s: %s over %s (%d points)" % (os.path.basename(path.rstrip(os.sep)) or path,
                                                            field, x, len(ys)))
        ax.grid(True, alpha=0.3)
        if x != "seq" and isinstance(xs[0], datetime.datetime):
            fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(out, format="png", dpi=100)
    finally:
        plt.close(fig)
    return out, len(ys), skipped, line


def cmd_plot(args):
    try:
        out, count, skipped, _ = plot(args.journal, args.field, args.x, args.out, args.title,
                                      warn=lambda text: sys.stderr.write("mini plot: %s\n" % text))
    except PlotError as exc:
        sys.stderr.write("mini plot: %s\n" % exc)
        return 2
    print("plotted %d points of %s over %s to %s%s" % (
        count, args.field, args.x, out, " (%d records without it skipped)" % skipped if skipped else ""))
    return 0


def register(sub):
    """Add plot to the `mini` parser's subcommands."""
    p = sub.add_parser("plot", help="plot a numeric field of a journal's records to a PNG (needs matplotlib)")
    p.add_argument("journal", metavar="JOURNAL", help="a journal file, or a state/queue directory")
    p.add_argument("--field", required=True, metavar="FIELD", help="the key to plot, or a dotted path (put.temp_c)")
    p.add_argument("--x", default="seq", metavar="seq|FIELD",
                   help="the x axis: seq (default), or a time field (numbers, or ISO 8601 strings)")
    p.add_argument("--out", metavar="FILE.png", help="the PNG to write (default: FIELD.png here)")
    p.add_argument("--title", help="the plot's title")
    p.set_defaults(func=cmd_plot)
