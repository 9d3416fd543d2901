"""`mini pull`: copy a directory (or a file) off a device through mpremote, then verify it.

The names in the device's listing are checked (minitools/safenames.py) before the
first file is copied: a tampered device cannot make the host write outside LOCAL_DIR.
"""
import binascii
import json
import os
import shutil
import subprocess
import sys
import tempfile

import minitools
import miniformat
from miniformat import CorruptRecord
from minireader import JournalReader
from ministore import FormatError
from minitools import safenames
from minitools.mpremote_link import (DeviceError, PREFIX, check_port, device_eval, error_line, fail,
                                     mpremote_command, remote_path)

LARGE_PULL = 64 * 1024
TRIES = 3  # copies of a file that changed on the device while it was copied, before the pull fails


# the device's tree under a folder: [[name, size]...] (a folder's name ends in "/", size -1);
# a file's size for a file; None when there is nothing there
_WALK_CODE = """
import os, json
def _mini_walk(d, rel, out):
    for e in os.ilistdir(d):
        p = d.rstrip('/') + '/' + e[0]
        if e[1] & 0x4000:
            out.append([rel + e[0] + '/', -1])
            _mini_walk(p, rel + e[0] + '/', out)
        else:
            out.append([rel + e[0], os.stat(p)[6]])
def _mini_list(d):
    try:
        st = os.stat(d)
    except OSError:
        return None
    if not st[0] & 0x4000:
        return st[6]
    out = []
    _mini_walk(d, '', out)
    return out
"""
_LIST_CODE = _WALK_CODE + """print('%s', json.dumps(_mini_list('%s')))
"""

# Once the copies are made, in one exchange: [size, crc32, crc32 of the first N bytes (-1: the
# file is shorter)] of each [name, N] (N: its copy's size), computed on the device, and the
# tree as the listing gives it then. A copy is checked against them.
_SUM_CODE = _WALK_CODE + """
import binascii
def _mini_sums(items):
    out = []
    buf = memoryview(bytearray(4096))
    for n, want in items:
        try:
            f = open(n, 'rb')
        except OSError:
            out.append([-1, 0, -1])
            continue
        size = crc = 0
        head = 0 if want == 0 else -1
        try:
            while True:
                k = f.readinto(buf[:min(4096, want - size)] if size < want else buf)
                if not k:
                    break
                crc = binascii.crc32(buf[:k], crc)
                size += k
                if size == want:
                    head = crc
        finally:
            f.close()
        out.append([size, crc, head])
    return out
print('%s', json.dumps([_mini_sums(%s), _mini_list('%s')]))
"""


class Progress:
    """A one-line text progress bar on stderr: files and bytes."""

    def __init__(self, total_files, total_bytes, enabled):
        self.files, self.bytes = total_files, total_bytes
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.shown = 0

    def update(self, done_files, done_bytes, name=""):
        if not self.enabled:
            return
        width = 30
        filled = width * done_bytes // self.bytes if self.bytes else width
        line = "[%s%s] %d/%d files, %s/%s %s" % ("#" * filled, "-" * (width - filled), done_files, self.files,
                                                  size_text(done_bytes), size_text(self.bytes), name)
        if self.tty:
            sys.stderr.write("\r" + line[:100].ljust(self.shown))
            self.shown = len(line[:100])
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self):
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def size_text(n):
    return "%d B" % n if n < 1024 else "%.1f KiB" % (n / 1024.0)


def pull(port, remote, local, force=False, progress=None, batch=64):
    """Copy the device's REMOTE (a directory or a file) to the new directory LOCAL.

    Returns (files, bytes). LOCAL is created whole or not at all: the copy goes to a
    temporary directory beside it first. An old LOCAL (empty, or any with force) is
    moved aside only once the copy is complete, and removed only once the copy is in
    its place; if that fails, the old LOCAL is put back. A LOCAL that cannot be moved
    aside (the current directory or one of its parents, /, a mount point, a symlink)
    is refused before anything is copied. A file that only grew on the device since it was
    copied (an app appending to it) is kept as it was copied, a journal's up to its last whole
    line or batch, and named on stderr (_check_copies: when that is consistent).
    """
    remote = remote_path(remote)
    target = _replaceable(local, remote)
    if os.path.exists(target) and not os.path.isdir(target):
        raise DeviceError("%s exists and is not a directory" % local)
    if os.path.isdir(target) and os.listdir(target) and not force:
        raise DeviceError("%s is not empty (pull into a new directory, or --force to replace it)" % local)
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise DeviceError("%s: no such directory" % parent)
    check_port(port)
    listing = device_eval(port, _LIST_CODE % (PREFIX, remote))
    if listing is None:
        raise DeviceError("%s: no such file or directory on the device" % remote)
    files, dirs, source = _parse_listing(listing, remote, target, port)
    total = sum(size for _, size in files)
    if progress is None:
        progress = total >= LARGE_PULL or len(files) > 16
    bar = Progress(len(files), total, progress == "always" or (progress and sys.stderr.isatty()))
    tmp = tempfile.mkdtemp(prefix=".mini-pull-", dir=parent)
    try:
        for name in dirs:
            os.makedirs(safenames.inside(tmp, name, port), exist_ok=True)
        done_files = done_bytes = 0
        bar.update(0, 0)
        for start in range(0, len(files), batch):
            chunk = files[start:start + batch]
            args = []
            for name, _ in chunk:
                path = safenames.inside(tmp, name, port)  # checked again where it lands
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if args:
                    args.append("+")
                args += ["fs", "cp", ":" + _device_name(source, name), path]
            done_files, done_bytes = _copy_batch(port, args, chunk, bar, done_files, done_bytes)
        bar.done()
        names = sorted(name for name, _ in listing) if isinstance(listing, list) else None
        said = _check_copies(port, source, remote, tmp, files, batch, names)
        total = sum(os.path.getsize(safenames.inside(tmp, name, port)) for name, _ in files)
        _put_in_place(tmp, target, local)
    except BaseException:
        bar.done()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for line in said:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()
    return len(files), total


def _check_copies(port, source, remote, tmp, files, batch, names):
    """Check each copy against the file on the device once the copies are done; return the
    lines to say on stderr for the files pulled as a prefix (none: every copy is its file).

    The device computes each file's size and CRC-32 and the CRC-32 of its first len(copy)
    bytes, and lists REMOTE again, in one exchange (it reads the files again, nothing more
    crosses the serial line). A copy whose size and CRC are the file's is good. A file that
    only grew since it was copied (its first len(copy) bytes are the copy) is an earlier
    version of a file appended to: its copy is kept (a journal's cut back to its last whole
    line, _take_prefix) when every other copy is good and the device holds the same names as
    the first listing (`names`, None for a single file). Otherwise every copy that is not
    good is made again, up to TRIES times, then the pull fails: a file rewritten in place (at
    the same size, say, which a size check misses), shrunk, replaced or removed would be a
    copy of no version of it, and a prefix beside files created or removed meanwhile may not
    go with them."""
    again, moved = files, False
    for attempt in range(TRIES):
        copies = []
        for name, _ in files:
            with open(safenames.inside(tmp, name, port), "rb") as f:
                mine = f.read()
            copies.append((len(mine), binascii.crc32(mine)))
        asked = [[_device_name(source, name), size] for (name, _), (size, _) in zip(files, copies)]
        got = device_eval(port, _SUM_CODE % (PREFIX, json.dumps(asked), remote))
        if not (isinstance(got, list) and len(got) == 2 and isinstance(got[0], list) and len(got[0]) == len(files)
                and all(isinstance(entry, list) and len(entry) == 3 and all(_is_int(v) for v in entry)
                        for entry in got[0])):
            raise DeviceError("%s: the device's sizes and CRCs of the copied files are not a list of %d entries"
                              % (port, len(files)))
        changed, grown = [], []
        for (name, _), (size, crc), (now, now_crc, head) in zip(files, copies, got[0]):
            if [now, now_crc] == [size, crc]:
                continue
            if now > size and head == crc:
                grown.append((name, size, now))
            else:
                changed.append(name)
        moved = bool(grown) and names is not None and _names(got[1]) != names
        if not changed and not moved:
            return [_take_prefix(safenames.inside(tmp, name, port), _device_name(source, name), now)
                    for name, size, now in grown]
        redo = set(changed) | set(name for name, _, _ in grown)
        again = [(name, size) for name, size in files if name in redo]
        if attempt + 1 == TRIES:
            break
        for start in range(0, len(again), batch):
            args = []
            for name, _ in again[start:start + batch]:
                args += (["+"] if args else []) + ["fs", "cp", ":" + _device_name(source, name),
                                                   safenames.inside(tmp, name, port)]
            _copy_batch(port, args, again[start:start + batch], Progress(0, 0, False), 0, 0)
    which = ", ".join(name for name, _ in again[:3]) + (" and %d more" % (len(again) - 3) if len(again) > 3 else "")
    why = (" (it grew, but files were created or removed in %s meanwhile)" % remote if moved
           else " (a program on the device writing it?)")
    raise DeviceError("%s changed on the device while it was copied, %d times in a row%s: nothing was written; "
                      "stop what writes it and pull again" % (which, TRIES, why))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _names(listing):
    """The sorted names of a device's listing of a folder (None for anything else)."""
    if not isinstance(listing, list) or not all(isinstance(entry, list) and entry and isinstance(entry[0], str)
                                                for entry in listing):
        return None
    return sorted(entry[0] for entry in listing)


def _is_journal(path):
    """Whether the file at path is a ministore journal's lines: its first line is whole and an
    intact ministore header of the version this code reads (FORMAT.md 2.1). A torn header, a
    damaged one and any other file are not: a file not known to be one is never changed."""
    with open(path, "rb") as f:
        first = f.readline(4096)
    if not first.endswith(b"\n") or miniformat.parse_line(first)[0] != miniformat.HEADER:
        return False
    try:
        return miniformat.check_header(path, first) is not None
    except FormatError:
        return False


def _take_prefix(path, device_name, device_size):
    """Keep the copy at path of a file that grew on the device after it was copied. A journal's
    is cut back to its last whole line (a line is whole or absent, as after a crash), and an
    atomic batch that its copy holds only the first lines of is cut off too (the device holds
    the rest: the writer was writing it); nothing else, damage stays as the device holds it.
    Any other file is kept byte for byte. The line to say on stderr."""
    if not _is_journal(path):
        return ("mini pull: %s was being appended: pulled its first %d bytes as they were (not a ministore "
                "journal, so not cut to a whole line); the device holds %d" % (
                    device_name, os.path.getsize(path), device_size))
    with open(path, "rb") as f:
        data = f.read()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        os.truncate(path, end)
    whole = "line"
    try:
        with JournalReader(path) as reader:
            for _ in reader:
                pass
        torn = reader.torn
    except (CorruptRecord, FormatError):  # damage before the end: kept as it is, for verify to report
        torn = None
    if (torn is not None and torn.reason.startswith("incomplete batch") and torn.offset + torn.length == end
            and data.count(b"\n", torn.offset, end) == len(torn.intact)):  # every line of it intact
        end, whole = torn.offset, "batch"
        os.truncate(path, end)
    return ("mini pull: %s was being appended: pulled its first %d bytes (up to its last whole %s); "
            "the device holds %d" % (device_name, end, whole, device_size))


def _device_name(source, name):
    return source + "/" + name if source else name


def _replaceable(local, remote):
    """LOCAL's absolute path, or DeviceError (one line, saying what to do) if a pull may not replace it.

    The last component is kept as given (not resolved): a symlink there is refused,
    never replaced and never written through.
    """
    stripped = local.rstrip(os.sep) or os.sep
    head, name = os.path.split(stripped)
    if name in ("", os.curdir, os.pardir):
        target = os.path.realpath(stripped)
    else:
        target = os.path.join(os.path.realpath(head or os.curdir), name)
    example = os.path.join(local, remote.rstrip("/").rsplit("/", 1)[-1] or "device")
    if os.path.islink(target):
        raise DeviceError("%s is a symlink (to %s): a pull neither replaces it nor writes through it; "
                          "name the directory itself, or a new directory" % (local, os.readlink(target)))
    if target == os.path.dirname(target):
        raise DeviceError("%s is the root directory, which a pull cannot replace; name a new directory, e.g. %s"
                          % (local, example))
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:  # the current directory was removed: it cannot be inside LOCAL
        cwd = None
    if cwd is not None and (cwd == target or cwd.startswith(target + os.sep)):
        what = "the current directory" if cwd == target else "a parent of the current directory"
        raise DeviceError("%s is %s, which a pull cannot replace; name a new directory, e.g. %s"
                          % (local, what, example))
    if os.path.ismount(target):
        raise DeviceError("%s is a mount point, which a pull cannot replace; name a new directory, e.g. %s"
                          % (local, example))
    return target


def _put_in_place(tmp, target, local):
    """Rename the complete copy tmp to target; an old target is moved aside first, removed last."""
    if not os.path.lexists(target):
        os.rename(tmp, target)
        return
    holder = tempfile.mkdtemp(prefix=".mini-pull-old-", dir=os.path.dirname(target))
    old = os.path.join(holder, "old")
    try:
        os.rename(target, old)
    except BaseException:
        os.rmdir(holder)
        raise
    try:
        os.rename(tmp, target)
    except BaseException as exc:
        try:
            os.rename(old, target)  # the user's directory back where it was
        except OSError:
            raise DeviceError("%s: the new copy could not be put in place (%s), nor the old %s back: "
                              "it is at %s" % (local, exc, local, old))
        os.rmdir(holder)
        raise
    shutil.rmtree(holder, ignore_errors=True)
    if os.path.lexists(holder):
        sys.stderr.write("mini pull: %s is the new copy, but the old one, moved to %s, could not all be "
                         "removed: remove it by hand\n" % (local, holder))


def _parse_listing(listing, remote, local, port):
    """(files [(name, size)], dirs [name], device folder they are in) from the device's answer.

    Every name is checked before anything is written: a listing that is not what the
    listing code prints, or that holds one unsafe name, is refused whole.
    """
    if isinstance(listing, int) and not isinstance(listing, bool) and listing >= 0:  # a single file
        base = remote.rsplit("/", 1)[-1]
        safenames.check_listing(local, [base], "the pull of %s" % remote)
        return [(base, listing)], [], remote.rsplit("/", 1)[0] if "/" in remote else ""
    if not isinstance(listing, list) or not all(
            isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
            and isinstance(entry[1], int) and not isinstance(entry[1], bool) and entry[1] >= -1
            for entry in listing):
        raise DeviceError("%s: the device's listing of %s is not a list of [name, size] entries; "
                          "nothing was written" % (port, remote))
    files, dirs = [], []
    for name, size in listing:
        if size < 0:
            dirs.append(name[:-1] if name.endswith("/") else name)
        else:
            files.append((name, size))
    safenames.check_listing(local, dirs + [name for name, _ in files], port)
    return files, dirs, "" if remote == "/" else remote


def _copy_batch(port, args, chunk, bar, done_files, done_bytes):
    """One mpremote session for a batch of `fs cp`; its "cp ..." lines drive the progress bar."""
    cmd = mpremote_command() + ["connect", port, "resume"] + args
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = 0
    for line in iter(proc.stdout.readline, b""):  # pyright: ignore[reportOptionalMemberAccess] (stdout=PIPE)
        if line.startswith(b"cp :"):
            if started:  # the previous file is complete
                done_files += 1
                done_bytes += chunk[started - 1][1]
            name = chunk[started][0] if started < len(chunk) else ""
            started += 1
            bar.update(done_files, done_bytes, name)
    err = proc.stderr.read()  # pyright: ignore[reportOptionalMemberAccess] (stderr=PIPE)
    proc.wait()
    if proc.returncode != 0:
        raise DeviceError("%s: %s" % (port, error_line(subprocess.CompletedProcess(cmd, proc.returncode, b"", err))))
    done_files += 1 if started else 0
    done_bytes += chunk[started - 1][1] if started else 0
    bar.update(done_files, done_bytes)
    return done_files, done_bytes


def cmd_pull(args):
    try:
        files, size = pull(args.port, args.remote, args.local, args.force,
                           "always" if args.progress else None)
        print("pulled %d files (%s) from %s:%s to %s" % (files, size_text(size), args.port, remote_path(args.remote),
                                                         args.local))
        try:
            report = minitools.verify(args.local)  # every journal in the tree (scan.journal_targets)
        except ValueError:
            print("no journals or state directories to verify")
            return 0
        except FormatError as exc:  # the pulled directory itself is a state directory, with a file not ours
            print("%s: %s" % (args.local, exc))
            return 1
        print(report)
        return 0 if report else 1
    except (DeviceError, safenames.UnsafeName, OSError) as exc:
        return fail("pull", exc)
