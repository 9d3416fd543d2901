"""`mini repair PATH [--apply]`: make a damaged journal, or the segments of a state or
queue directory, readable again, moving every damaged region to a side file.

A torn tail is cut; a corrupt region in the middle is replaced by a pad that names
the seqs it held (FORMAT.md 2.3, `"lost"`), so every other record keeps its seq. Only
files we wrote are changed (FORMAT.md 2.1): a path, segment or snapshot that is not
ours refuses the whole repair before a byte changes. A directory is repaired on a
copy first, and only when the copy recovers (its snapshots and segments fit together)
is the directory itself repaired, under the writer's lock; damaged snapshots are left
for the next snapshot to remove (restore skips them).
"""
import os
import shutil
import tempfile

import minishim
from ministore import LockedError, MiniError, hold
from minilog import segment_files

from minitools import UsageError
from minitools import scan as scanning


def cmd_repair(args):
    path = args.journal
    if os.path.isdir(path):
        return repair_directory(path, args.apply)
    if not os.path.isfile(path):
        raise UsageError("%s: no such journal file or directory" % path)
    return repair_file(path, args.apply)


def refuse_unreadable(problems):
    """A file that is not ours (or of a version we do not read) is bad input, not damage: exit 2."""
    for problem in problems:
        if problem.kind == "error":
            raise UsageError(problem.reason)


def _plan(path, result, newest=True):
    """The repair plan of a damaged journal, or UsageError when it cannot have one.
    In a directory, an older segment with nothing intact cannot be left to a writer."""
    plan = scanning.repair_plan(result)
    if plan is None:
        if result.problems[0].kind == "torn":
            if newest:
                raise UsageError("%s: no intact record at all; opening it for writing recreates the header" % path)
            raise UsageError("%s: no intact record at all, and it is not the newest segment: "
                             "where its records start is unknown" % path)
        raise UsageError("%s: the header is damaged and no record follows to number a new one from; "
                         "nothing in the file is a record: move it aside" % path)
    return plan


def _show(path, plan):
    for problem, replacement in plan:
        action = "cut" if not replacement else (
            "replace with a new header and a pad" if problem.offset == 0 else "replace with a pad")
        print("%s -> %s, moving %d bytes to %s" % (problem, action, problem.length,
                                                   scanning.side_path(path, problem)))


def _apply(path, plan):
    try:
        sides = scanning.apply_repair(path, plan)
    except ValueError as exc:  # a journal with other hard links: nothing changed
        raise UsageError(str(exc))
    for side, size in sides:
        print("moved %d bytes to %s" % (size, side))


def repair_file(path, apply):
    lock = None
    if apply:  # taken before the first read, as for a directory: nothing may change between plan and repair
        try:
            lock = minishim.JournalFile(path)  # refuse to repair under a running writer
        except minishim.Locked:
            raise UsageError("%s is open for writing by another process" % path)
    try:
        return _repair_file(path, apply)
    finally:
        if lock is not None:
            lock.close()


def _repair_file(path, apply):
    result = scanning.scan(path)
    refuse_unreadable(result.problems)
    if result.ok:
        print("%s: OK, nothing to repair" % path)
        return 0
    plan = _plan(path, result)
    _show(path, plan)
    if not apply:
        print("dry run: nothing changed; run again with --apply to repair")
        return 0
    _apply(path, plan)
    after = scanning.scan(path)
    if not after.ok:
        raise MiniError("%s: still damaged after repair: %s" % (path, after.problems[0]))
    print("%s: repaired; %d records, last seq %s" % (path, after.records, after.last_seq))
    return 0


def repair_directory(directory, apply):
    """Each damaged segment as repair_file does it, after a trial on a copy recovers."""
    if not segment_files(directory):
        raise UsageError("%s: no journal segments (journal-NNNNNNNN.jsonl) here; "
                         "mini repair takes a journal file, or a state or queue directory" % directory)
    lock = None
    if apply:  # taken before the first read: nothing may change between the plan and the repair
        try:
            lock = hold(minishim.DirLock, directory)
        except LockedError:
            raise UsageError("%s is open for writing by another process" % directory)
    try:
        return _repair_directory(directory, apply)
    finally:
        if lock is not None:
            lock.release()


def _repair_directory(directory, apply):
    kind = scanning.classify(directory)
    problems = scanning.verify_path(directory)  # raises FormatError for a snapshot not ours
    refuse_unreadable(problems)
    if not problems:
        print("%s: OK, nothing to repair" % directory)
        return 0
    segments = [path for _, path in segment_files(directory)]
    plans = []
    for index, segment in enumerate(segments):
        result = scanning.scan(segment)
        if result.ok:
            continue
        newest = index == len(segments) - 1
        if newest and scanning.repair_plan(result) is None and result.problems[0].kind == "torn":
            print("%s: a torn header and nothing else: opening the %s writes it again" % (segment, kind))
            continue
        plans.append((segment, _plan(segment, result, newest)))
    for problem in problems:
        if os.path.basename(problem.path).startswith("snap-"):
            print("%s -> left as it is: restore skips it, and the next snapshot removes it" % problem)
    for segment, plan in plans:
        _show(segment, plan)
    if not plans:
        try:
            state = scanning.recovers(directory, kind)
        except MiniError as exc:
            raise UsageError("%s: no segment is damaged, but the %s does not recover: %s; "
                             "repair cannot help" % (directory, kind, exc))
        print("%s: no segment to repair; it recovers to the %s" % (directory, state))
        return 0
    state = _trial(directory, kind, plans)
    if not apply:
        print("after the repair it recovers to the %s" % state)
        print("dry run: nothing changed; run again with --apply to repair")
        return 0
    for segment, plan in plans:
        _apply(segment, plan)
    try:
        state = scanning.recovers(directory, kind)
    except MiniError as exc:
        raise MiniError("%s: still does not recover after repair: %s" % (directory, exc))
    print("%s: repaired; it recovers to the %s" % (directory, state))
    return 0


def _trial(directory, kind, plans):
    """Repair a copy of the segments and snapshots; what the copy recovers to, or
    UsageError (nothing changed) when it would not recover."""
    trial = tempfile.mkdtemp(prefix="mini-repair-")
    try:
        for name in os.listdir(directory):
            if name.startswith(("journal-", "snap-")) and os.path.isfile(os.path.join(directory, name)):
                shutil.copyfile(os.path.join(directory, name), os.path.join(trial, name))
        for segment, plan in plans:
            scanning.apply_repair(os.path.join(trial, os.path.basename(segment)), plan)
        try:
            return scanning.recovers(trial, kind)
        except MiniError as exc:
            raise UsageError("%s: even with its segments repaired, the %s would not recover: %s; nothing changed"
                             % (directory, kind, exc))
    finally:
        shutil.rmtree(trial, ignore_errors=True)
