"""mini: inspect, verify and repair the journals, snapshots and queues of the mini bricks.

Every error is one line on stderr and a non-zero exit: 1 for "verify found
problems", 2 for bad usage or input (a missing file, a wrong format, a port that
is not there).
"""
import argparse
import importlib
import json
import os
import sys

from ministore import MiniStore, MiniError, FormatError
from minisnap import SnapStore, NotFound, read_snapshot
from minilog import read_segments

import minitools
from minitools import UsageError, dump, read_settled
from minitools import scan as scanning
from minitools import device
from minitools import flashregion
from minitools import plot
from minitools import ingest
from minitools.repair import cmd_repair, refuse_unreadable


def _journals(path):
    """The journal files behind PATH: the file itself, or a directory's segments in order."""
    try:
        return scanning.journal_files(path)
    except ValueError as exc:
        raise UsageError(str(exc))


# ------------------------------------------------------------------ commands

def cmd_cat(args):
    if flashregion.is_dump(args):  # a miniflash region in a raw flash dump (FORMAT.md 6)
        return flashregion.cat(args)
    out = sys.stdout
    for journal in _journals(args.journal):
        reader = MiniStore.stream(journal, from_seq=args.from_seq)
        for seq, record in reader:
            out.write(dump(record if args.raw else {"seq": seq, "rec": record}) + "\n")
        if reader.torn is not None:
            sys.stderr.write("mini cat: %s: torn tail skipped at byte %d (%s)\n" % (
                journal, reader.torn.offset, reader.torn.reason))
    return 0


def cmd_verify(args):
    reports = []
    for path in args.paths:
        if not os.path.exists(path):
            raise UsageError("%s: no such file or directory" % path)
        try:
            reports.append(minitools.verify(path))
        except ValueError as exc:  # a directory with no journal in it
            raise UsageError(str(exc))
        except FormatError as exc:  # PATH itself is not ours: bad input, not damage
            raise UsageError(str(exc))
    bad = not all(reports)
    if args.json:
        sys.stdout.write(json.dumps({"ok": not bad, "paths": [_report_dict(r) for r in reports]}, indent=2) + "\n")
    else:
        for report in reports:
            print(report)
    return 1 if bad else 0


def _report_dict(report):
    out = {"path": report.path, "kind": report.kind, "ok": report.ok,
           "problems": [p.as_dict() for p in report.problems]}
    if report.journals:
        out["journals"] = [_report_dict(journal) for journal in report.journals]
    return out


def cmd_stats(args):
    path = args.path
    if not os.path.exists(path):
        raise UsageError("%s: no such file or directory" % path)
    if os.path.isdir(path):
        stats = read_settled(path, lambda: _stats(path))
    else:
        stats = _stats(path)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        for key in stats:
            print("%-18s %s" % (key + ":", stats[key]))
    return 0


def _stats(path):
    try:
        kind = scanning.classify(path)  # it reads a segment: inside read_settled for a directory
    except ValueError as exc:
        raise UsageError(str(exc))
    stats = {"path": path, "kind": kind}
    if kind == "snapshot":
        state, seq = read_snapshot(path)
        stats.update(seq=seq, bytes=os.path.getsize(path))
    else:
        journals = _journals(path)
        scans = [scanning.scan(j) for j in journals]
        for result in scans:
            refuse_unreadable(result.problems)
        seqs = [s.first_seq for s in scans if s.first_seq is not None]
        lasts = [s.last_seq for s in scans if s.last_seq is not None]
        stats.update(
            records=sum(s.records for s in scans),
            bytes=sum(s.size for s in scans),
            segments=len(journals),
            first_seq=min(seqs) if seqs else None,
            last_seq=max(lasts) if lasts else None,
            problems=sum(len(s.problems) for s in scans),
            lost_in_repairs=[list(r) for s in scans for r in s.lost],  # seq ranges a mini repair moved aside
        )
    if os.path.isdir(path):
        snaps = SnapStore(path).valid()
        stats["snapshots"] = len(snaps)
        stats["last_snapshot_seq"] = snaps[0][0] if snaps else None
        if kind == "queue":
            from miniqueue import MiniQueue
            q = MiniQueue.inspect(path)
            stats.update(ready=len(q), in_flight=q.in_flight(), dead=len(q.dead()),
                         dropped=q.dropped, live_bytes=q.live_bytes())
    return stats


def load_mutators(name):
    """The module with the Mutator classes: a module name (from the cwd or sys.path), or a .py file's path."""
    if name.endswith(".py") or os.sep in name or (os.altsep and os.altsep in name):
        if not os.path.isfile(name):
            raise UsageError("%s: no such mutators file" % name)
        from importlib import util as import_util
        stem = os.path.splitext(os.path.basename(name))[0]
        spec = import_util.spec_from_file_location("mini_mutators_" + stem, name)
        if spec is None or spec.loader is None:
            raise UsageError("%s: cannot load it as a Python module" % name)
        module = import_util.module_from_spec(spec)
        sys.path.insert(0, os.path.dirname(os.path.abspath(name)))  # its own imports of its neighbours
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's code: whatever it raises is one line here
            raise UsageError("cannot import mutators file %s: %r" % (name, exc))
        return module
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except Exception as exc:  # the user's code: whatever it raises is one line here
        raise UsageError("cannot import mutators module %r: %r" % (name, exc))


def cmd_state(args):
    directory = args.directory
    if not os.path.isdir(directory):
        raise UsageError("%s: no such directory" % directory)
    if args.mutators:
        from ministate import StateManager, Mutator
        module = load_mutators(args.mutators)
        mutators = [v for v in vars(module).values()
                    if isinstance(v, type) and issubclass(v, Mutator) and v is not Mutator]
        initial = getattr(module, "INITIAL", None)
        if args.initial is not None:
            try:
                initial = json.loads(args.initial)
            except ValueError as exc:
                raise UsageError("--initial is not JSON: %s" % exc)
        state, seq, snap_seq = read_settled(directory, lambda: StateManager.load(directory, initial, mutators))
        print(json.dumps({"seq": seq, "snapshot_seq": snap_seq, "state": state}, indent=2, ensure_ascii=False))
        return 0

    def read():
        try:
            snapshot = SnapStore(directory).restore()
        except NotFound:
            snapshot = None
        snap_seq = 0 if snapshot is None else snapshot[1]
        tail = []
        return snapshot, tail, read_segments(directory, snap_seq, lambda seq, rec: tail.append((seq, rec)))
    snapshot, tail, last = read_settled(directory, read)
    if snapshot is not None:
        state, snap_seq = snapshot
        print("snapshot at seq %d:" % snap_seq)
        print(json.dumps(state, indent=2, ensure_ascii=False))
    else:
        print("no snapshot: the state is the application's initial state")
    print("journal after it:")
    for seq, record in tail:
        print(dump({"seq": seq, "rec": record}))
    print("last seq: %d" % last)
    return 0


# ------------------------------------------------------------------ entry point

def build_parser():
    parser = argparse.ArgumentParser(prog="mini", description=(__doc__ or "").split("\n")[0])  # None under -OO
    parser.add_argument("--version", action="version", version="mini %s" % minitools.__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("cat", help="print records as JSON lines (for jq)")
    p.add_argument("journal", help="a journal file, or a state/queue directory")
    p.add_argument("--from-seq", type=int, default=0, metavar="N", help="start at seq N")
    p.add_argument("--raw", action="store_true", help="print only the records, without their seq")
    flashregion.add_cat_args(p)
    p.set_defaults(func=cmd_cat)

    p = sub.add_parser("verify", help="check headers, CRCs, seqs, batches and tails; exit 1 if anything is wrong")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a journal, a snapshot, a state/queue directory, or a folder: every journal under it")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("stats", help="records, bytes, seq range, snapshots, queue depth")
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("repair", help="cut a torn tail and move corrupt regions to side files (dry run unless --apply)")
    p.add_argument("journal", metavar="PATH", help="a journal file, or a state/queue directory (its segments)")
    p.add_argument("--apply", action="store_true", help="really change the journal (or the directory's segments)")
    p.set_defaults(func=cmd_repair)

    p = sub.add_parser("state", help="recover and print the state of a ministate directory")
    p.add_argument("directory")
    p.add_argument("--mutators", metavar="MODULE|FILE.py",
                   help="module name, or path of a .py file, with the Mutator classes (and optionally INITIAL)")
    p.add_argument("--initial", metavar="JSON", help="initial state, if the module has no INITIAL")
    p.set_defaults(func=cmd_state)

    device.register(sub)  # pull, tail, image (minitools/device.py)
    plot.register(sub)    # plot (minitools/plot.py; matplotlib: pip install mini-bricks[plot])
    ingest.register(sub)  # ingest (minitools/ingest.py)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # the reader went away (mini cat J | head): not an error
        return 0
    except (UsageError, MiniError, flashregion.RegionError, OSError) as exc:  # OSError after BrokenPipeError
        sys.stderr.write("mini %s: %s\n" % (args.command, exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
