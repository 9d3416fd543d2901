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
from ministore import FormatError
from minitools import safenames
from minitools.mpremote_link import (DeviceError, PREFIX, check_port, device_eval, error_line, fail,
                                     mpremote_command, remote_path)

LARGE_PULL = 64 * 1024
TRIES = 3  # copies of a file that changed on the device while it was copied, before the pull fails


_LIST_CODE = """
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
print('%s', json.dumps(_mini_list('%s')))
"""

# [size, crc32] of each file, computed on the device: a copy is checked against them
_SUM_CODE = """
import json, binascii
def _mini_sums(names):
    out = []
    buf = bytearray(4096)
    for n in names:
        try:
            f = open(n, 'rb')
        except OSError:
            out.append([-1, 0])
            continue
        size = crc = 0
        try:
            while True:
                k = f.readinto(buf)
                if not k:
                    break
                crc = binascii.crc32(memoryview(buf)[:k], crc)
                size += k
        finally:
            f.close()
        out.append([size, crc])
    return out
print('%s', json.dumps(_mini_sums(%s)))
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
    is refused before anything is copied.
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
        _check_copies(port, source, tmp, files, batch)
        _put_in_place(tmp, target, local)
    except BaseException:
        bar.done()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(files), total


def _check_copies(port, source, tmp, files, batch):
    """Each copy must hold what the device's file holds once the copy is done: the same size and
    CRC-32, which the device computes (one exchange for all the files; it reads them again,
    nothing more crosses the serial line). A file changed on the device while it was copied
    (rewritten in place at the same size, say, which a size check misses) would otherwise be a
    copy of no version of it: one is copied again, up to TRIES times, then the pull fails."""
    pending = files
    for attempt in range(TRIES):
        sums = device_eval(port, _SUM_CODE % (PREFIX, json.dumps([_device_name(source, name)
                                                                  for name, _ in pending])))
        if not isinstance(sums, list) or len(sums) != len(pending):
            raise DeviceError("%s: the device's sizes and CRCs of the copied files are not a list of %d entries"
                              % (port, len(pending)))
        changed = []
        for (name, _), got in zip(pending, sums):
            with open(safenames.inside(tmp, name, port), "rb") as f:
                mine = f.read()
            if got != [len(mine), binascii.crc32(mine)]:
                changed.append((name, got[0] if isinstance(got, list) and got else -1))
        if not changed:
            return
        if attempt + 1 == TRIES:
            break
        for start in range(0, len(changed), batch):
            args = []
            for name, _ in changed[start:start + batch]:
                args += (["+"] if args else []) + ["fs", "cp", ":" + _device_name(source, name),
                                                   safenames.inside(tmp, name, port)]
            _copy_batch(port, args, changed[start:start + batch], Progress(0, 0, False), 0, 0)
        pending = changed
    names = ", ".join(name for name, _ in changed[:3]) + (" and %d more" % (len(changed) - 3) if len(changed) > 3 else "")
    raise DeviceError("%s changed on the device while it was copied, %d times in a row (a program on the device "
                      "writing it?): nothing was written; stop what writes it and pull again" % (names, TRIES))


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
