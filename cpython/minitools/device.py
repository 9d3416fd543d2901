"""The `mini` commands that talk to a device, or read its flash.

    mini pull [--port PORT] REMOTE_DIR LOCAL_DIR   copy a state directory off a board (mpremote), then verify it
    mini tail --port PORT JOURNAL [--follow]       print a journal's records on the board as they are appended
    mini image extract FLASH.BIN --board B OUT_DIR  extract every file of a LittleFS flash dump (littlefs-python)

`mini tail` on a state or queue directory follows its segments; a record that a
compaction removes before the next poll (it is in the snapshot) is not printed.

PORT is anything mpremote's `connect` takes: /dev/ttyUSB0, socket://127.0.0.1:PORT
(the virtual board, boards/virtual), auto. Each command connects with `resume`, so
the board is not soft-reset; like any mpremote command, connecting interrupts a
program that is running (Ctrl-C), for example main.py.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from ministore import parse_line, RECORD

from minitools import scan as scanning

PREFIX = "MINI-DEVICE"
BLOCK_SIZE = 4096
PROG_SIZE = {"esp32": 32, "rp2040": 256}
LARGE_PULL = 64 * 1024


class DeviceError(Exception):
    """One line on stderr, exit 2."""


def _fail(command, exc):
    sys.stderr.write("mini %s: %s\n" % (command, exc))
    return 2


def _dump(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# ------------------------------------------------------------------ mpremote

def mpremote_command():
    try:
        import mpremote  # noqa: F401
        return [sys.executable, "-m", "mpremote"]
    except ImportError:
        found = shutil.which("mpremote")
        if found is None:
            raise DeviceError("mpremote is not installed (pip install mpremote)")
        return [found]


def check_port(port):
    """Fail early, in one line, when nothing is there."""
    if port.startswith("socket://"):
        host, _, number = port[len("socket://"):].rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(number)), timeout=3).close()
        except ValueError:
            raise DeviceError("%s: not a socket://HOST:PORT address" % port)
        except OSError as exc:
            raise DeviceError("%s: no device there (%s)" % (port, exc.strerror or exc))
    elif port.startswith("port:") or "/" in port or port.startswith("COM"):
        path = port[len("port:"):] if port.startswith("port:") else port
        if "://" not in path and not os.path.exists(path):
            raise DeviceError("%s: no such serial port" % path)


def _error_line(proc):
    text = (proc.stderr or b"").decode("utf-8", "replace").strip() or \
        (proc.stdout or b"").decode("utf-8", "replace").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1] if lines else "exit status %d" % proc.returncode
    return line[len("mpremote: "):] if line.startswith("mpremote: ") else line


def mpremote(port, args, timeout=120):
    """Run `mpremote connect PORT resume ARGS...`; return its stdout (bytes)."""
    cmd = mpremote_command() + ["connect", port, "resume"] + list(args)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeviceError("%s: the device did not answer within %d s" % (port, timeout))
    if proc.returncode != 0:
        raise DeviceError("%s: %s" % (port, _error_line(proc)))
    return proc.stdout


def device_eval(port, code, timeout=120):
    """Run code on the device; it prints PREFIX + JSON on one line: return that value."""
    out = mpremote(port, ["exec", code], timeout=timeout)
    for line in out.decode("utf-8", "replace").splitlines():
        if line.startswith(PREFIX + " "):
            return json.loads(line[len(PREFIX) + 1:])
    raise DeviceError("%s: unexpected answer from the device: %r" % (port, out[-200:]))


def _remote(path):
    path = path[1:] if path.startswith(":") else path
    path = path.rstrip("/") or "/"
    if "'" in path or "\\" in path or "\n" in path:
        raise DeviceError("%r: unsupported character in the device path" % path)
    return path


# ------------------------------------------------------------------ pull

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
                                                  _size(done_bytes), _size(self.bytes), name)
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


def _size(n):
    return "%d B" % n if n < 1024 else "%.1f KiB" % (n / 1024.0)


def pull(port, remote, local, force=False, progress=None, batch=64):
    """Copy the device's REMOTE (a directory or a file) to the new directory LOCAL.

    Returns (files, bytes). LOCAL is created whole or not at all: the copy goes to a
    temporary directory beside it first.
    """
    remote = _remote(remote)
    if os.path.exists(local) and not os.path.isdir(local):
        raise DeviceError("%s exists and is not a directory" % local)
    if os.path.isdir(local) and os.listdir(local) and not force:
        raise DeviceError("%s is not empty (pull into a new directory, or --force to replace it)" % local)
    parent = os.path.dirname(os.path.abspath(local))
    if not os.path.isdir(parent):
        raise DeviceError("%s: no such directory" % parent)
    check_port(port)
    listing = device_eval(port, _LIST_CODE % (PREFIX, remote))
    if listing is None:
        raise DeviceError("%s: no such file or directory on the device" % remote)
    if isinstance(listing, int):  # a single file
        base = remote.rsplit("/", 1)[-1]
        files, dirs, source = [(base, listing)], [], remote.rsplit("/", 1)[0] if "/" in remote else ""
    else:
        files = [(name, size) for name, size in listing if size >= 0]
        dirs = [name for name, size in listing if size < 0]
        source = "" if remote == "/" else remote
    total = sum(size for _, size in files)
    if progress is None:
        progress = total >= LARGE_PULL or len(files) > 16
    bar = Progress(len(files), total, progress == "always" or (progress and sys.stderr.isatty()))
    tmp = tempfile.mkdtemp(prefix=".mini-pull-", dir=parent)
    try:
        for name in dirs:
            os.makedirs(os.path.join(tmp, name), exist_ok=True)
        done_files = done_bytes = 0
        bar.update(0, 0)
        for start in range(0, len(files), batch):
            chunk = files[start:start + batch]
            args = []
            for name, _ in chunk:
                os.makedirs(os.path.dirname(os.path.join(tmp, name)), exist_ok=True)
                if args:
                    args.append("+")
                args += ["fs", "cp", ":" + (source + "/" + name if source else name), os.path.join(tmp, name)]
            done_files, done_bytes = _copy_batch(port, args, chunk, bar, done_files, done_bytes)
        bar.done()
        for name, size in files:
            got = os.path.getsize(os.path.join(tmp, name))
            if got != size:
                raise DeviceError("%s: copied %d bytes of %d" % (name, got, size))
        if os.path.isdir(local):
            shutil.rmtree(local)
        os.rename(tmp, local)
    except BaseException:
        bar.done()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(files), total


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
        raise DeviceError("%s: %s" % (port, _error_line(subprocess.CompletedProcess(cmd, proc.returncode, b"", err))))
    done_files += 1 if started else 0
    done_bytes += chunk[started - 1][1] if started else 0
    bar.update(done_files, done_bytes)
    return done_files, done_bytes


def verify_targets(local):
    """What to verify in a pulled tree: state/queue directories, and loose journal files."""
    targets = []
    for root, dirs, names in os.walk(local):
        dirs.sort()
        if any(n.startswith(("journal-", "snap-")) for n in names):
            targets.append(root)
            continue
        targets += [os.path.join(root, n) for n in sorted(names) if n.endswith(".jsonl")]
    return targets


def cmd_pull(args):
    try:
        files, size = pull(args.port, args.remote, args.local, args.force,
                           "always" if args.progress else None)
        print("pulled %d files (%s) from %s:%s to %s" % (files, _size(size), args.port, _remote(args.remote),
                                                         args.local))
        targets = verify_targets(args.local)
        if not targets:
            print("no journals or state directories to verify")
            return 0
        bad = False
        for target in targets:
            try:
                problems = scanning.verify_path(target)
            except ValueError as exc:
                problems = [str(exc)]
            bad = bad or bool(problems)
            if not problems:
                print("%s: OK" % target)
            for problem in problems:
                print(problem)
        return 1 if bad else 0
    except DeviceError as exc:
        return _fail("pull", exc)


# ------------------------------------------------------------------ tail

_TAIL_CODE = """
import os, json, binascii
def _mini_tail(p, offsets, budget, first, tail):
    try:
        st = os.stat(p)
    except OSError:
        return None
    if st[0] & 0x4000:
        names = [p + '/' + n for n in sorted(os.listdir(p)) if n.startswith('journal-') and n.endswith('.jsonl')]
    else:
        names = [p]
    out = []
    for i in range(len(names)):
        size = os.stat(names[i])[6]
        start = offsets.get(names[i])
        if start is None:
            if not first or tail < 0:
                start = 0
            elif i == len(names) - 1:
                start = max(0, size - tail - 1)
            else:
                start = size
        data = b''
        if size > start and budget > 0:
            with open(names[i], 'rb') as f:
                f.seek(start)
                data = f.read(min(size - start, budget))
            budget -= len(data)
        out.append([names[i], size, start, binascii.hexlify(data).decode()])
    return out
print('%s', json.dumps(_mini_tail('%s', %s, %d, %d, %d)))
"""


class Follower:
    """Polls a journal (or a directory of segments) on the device and turns new bytes into records."""

    def __init__(self, port, journal, lines, raw, out=None, err=None):
        self.port = port
        self.journal = _remote(journal)
        self.tail_bytes = -1 if lines < 0 else (0 if lines == 0 else 2048 + 512 * lines)
        self.lines = lines
        self.raw = raw
        self.offsets = {}      # device file -> offset after its last complete line
        self.resync = set()    # files read from the middle of a line: skip to the next newline
        self.budget = 16 * 1024
        self.first = True
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def poll(self):
        """One exchange with the device; returns True if more bytes are waiting."""
        code = _TAIL_CODE % (PREFIX, self.journal, json.dumps(self.offsets), self.budget, self.first,
                             self.tail_bytes)
        answer = device_eval(self.port, code)
        if answer is None:
            raise FileNotFoundError(self.journal)
        records = []
        more = moved = False
        seen = set()
        for name, size, start, hexdata in answer:
            seen.add(name)
            known = self.offsets.get(name)
            if known is not None and size < known:
                self.err.write("mini tail: %s shrank to %d bytes: reading it again from the start\n" % (name, size))
                self.offsets[name] = 0
                more = True
                continue
            data = bytes.fromhex(hexdata)
            if known is None and start > 0:  # a window that starts (1 byte early) inside a line:
                self.resync.add(name)        # skip through the first newline
            offset, new = self._lines(name, start, data)
            records += new
            moved = moved or offset > start
            self.offsets[name] = offset
            if start + len(data) < size:
                more = True
        # a line longer than what one poll reads: read more at once next time
        self.budget = min(self.budget * 2, 1 << 20) if more and not moved else 16 * 1024
        for name in list(self.offsets):
            if name not in seen:
                del self.offsets[name]  # compacted away
                self.resync.discard(name)
        if self.first and self.lines > 0:
            records = records[-self.lines:]
        self.first = False
        for seq, record in records:
            self.out.write(_dump(record if self.raw else {"seq": seq, "rec": record}) + "\n")
        self.out.flush()
        return more

    def _lines(self, name, start, data):
        records = []
        at = 0
        if name in self.resync:
            cut = data.find(b"\n")
            if cut < 0:
                return start + len(data), records
            at = cut + 1
            self.resync.discard(name)
        while True:
            end = data.find(b"\n", at)
            if end < 0:
                break  # an incomplete line: read it again next time
            line = data[at:end + 1]
            kind, obj = parse_line(line)
            if kind == RECORD and isinstance(obj, dict):
                records.append((obj["seq"], obj["rec"]))
            elif kind is None:
                self.err.write("mini tail: %s: damaged line at byte %d (%s)\n" % (name, start + at, obj))
            at = end + 1
        return start + at, records


def cmd_tail(args):
    try:
        check_port(args.port)
        follower = Follower(args.port, args.journal, args.lines, args.raw)
        lost = waiting = False
        while True:
            try:
                more = follower.poll()
                if lost:
                    sys.stderr.write("mini tail: %s is back\n" % args.port)
                    lost = False
            except FileNotFoundError:
                if not args.follow:
                    raise DeviceError("%s: no such file or directory on the device" % follower.journal)
                if not waiting:
                    sys.stderr.write("mini tail: waiting for %s to appear\n" % follower.journal)
                    waiting = True
                more = False
            except DeviceError as exc:
                if not args.follow or follower.first:
                    raise
                if not lost:
                    sys.stderr.write("mini tail: lost the device (%s); retrying\n" % exc)
                    lost = True
                more = False
            if not args.follow:
                if not more:
                    return 0
                continue
            if not more:
                time.sleep(args.interval)
    except DeviceError as exc:
        return _fail("tail", exc)
    except KeyboardInterrupt:
        return 0


# ------------------------------------------------------------------ image extract

def open_image(path, board, offset=0, block_count=None):
    """Mount (read-only, in memory) the LittleFS in a flash dump; return the littlefs.LittleFS."""
    try:
        from littlefs import LittleFS, UserContext, LittleFSError
    except ImportError:
        raise DeviceError("reading flash images needs littlefs-python (pip install littlefs-python)")
    if not os.path.isfile(path):
        raise DeviceError("%s: no such file" % path)
    with open(path, "rb") as f:
        f.seek(offset)
        data = bytearray(f.read())
    if len(data) < 2 * BLOCK_SIZE:
        raise DeviceError("%s: %d bytes after offset %d is too small for a LittleFS" % (path, len(data), offset))
    prog = PROG_SIZE[board]
    for count in ([block_count] if block_count else [0, len(data) // BLOCK_SIZE]):
        fs = LittleFS(context=UserContext(buffer=bytearray(data)), mount=False, block_size=BLOCK_SIZE,
                      block_count=count, read_size=prog, prog_size=prog, cache_size=min(BLOCK_SIZE, 4 * prog),
                      lookahead_size=32)
        try:
            fs.mount()
            return fs
        except LittleFSError:
            continue
    hint = ""
    found = _find_superblock(data)
    if found is not None:
        hint = "; a LittleFS superblock is at offset %d (0x%x): try --offset %d" % (
            offset + found, offset + found, offset + found)
    raise DeviceError("%s: no LittleFS at offset %d (block size %d)%s" % (path, offset, BLOCK_SIZE, hint))


def _find_superblock(data):
    for at in range(0, len(data) - BLOCK_SIZE + 1, BLOCK_SIZE):
        if data[at + 8:at + 16] == b"littlefs":
            return at
    return None


def extract(path, board, out_dir, offset=0, block_count=None, force=False, log=None):
    """Copy every file of the image into out_dir; returns [(path in the image, bytes)]."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DeviceError("%s exists and is not a directory" % out_dir)
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not force:
        raise DeviceError("%s is not empty (extract into a new directory, or --force)" % out_dir)
    fs = open_image(path, board, offset, block_count)
    extracted = []
    os.makedirs(out_dir, exist_ok=True)
    for root, dirs, names in fs.walk("/"):
        rel = root.strip("/")
        os.makedirs(os.path.join(out_dir, rel), exist_ok=True)
        for name in sorted(names):
            inside = (root.rstrip("/") + "/" + name)
            with fs.open(inside, "rb") as f:
                data = f.read()
            with open(os.path.join(out_dir, rel, name), "wb") as f:
                f.write(data)
            extracted.append((inside, len(data)))
            if log is not None:
                log("%s  %d bytes" % (inside, len(data)))
    return extracted


def cmd_image_extract(args):
    try:
        extracted = extract(args.image, args.board, args.out_dir, args.offset, args.block_count, args.force,
                            log=print)
        print("extracted %d files (%s) from %s to %s" % (len(extracted), _size(sum(n for _, n in extracted)),
                                                         args.image, args.out_dir))
        return 0
    except DeviceError as exc:
        return _fail("image extract", exc)


# ------------------------------------------------------------------ registration

def register(sub):
    """Add pull, tail and image to the `mini` parser's subcommands."""
    p = sub.add_parser("pull", help="copy a state directory off a device (mpremote), then verify it")
    p.add_argument("--port", default="auto", help="mpremote device: /dev/ttyUSB0, socket://HOST:PORT, auto")
    p.add_argument("remote", metavar="REMOTE_DIR", help="directory (or file) on the device, e.g. :data")
    p.add_argument("local", metavar="LOCAL_DIR", help="new local directory that becomes its copy")
    p.add_argument("--force", action="store_true", help="replace LOCAL_DIR if it is not empty")
    p.add_argument("--progress", action="store_true", help="always show the progress bar (else: large pulls on a tty)")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("tail", help="print a device journal's records as they are appended (polls over mpremote)")
    p.add_argument("--port", default="auto", help="mpremote device: /dev/ttyUSB0, socket://HOST:PORT, auto")
    p.add_argument("journal", metavar="JOURNAL", help="journal file, or state/queue directory, on the device")
    p.add_argument("-f", "--follow", action="store_true", help="keep polling for new records (Ctrl-C stops)")
    p.add_argument("-n", "--lines", type=int, default=10, metavar="N",
                   help="start with the last N records (default 10; -1: all; 0: only new ones)")
    p.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between polls (default 1)")
    p.add_argument("--raw", action="store_true", help="print only the records, without their seq")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("image", help="read a raw flash dump")
    image_sub = p.add_subparsers(dest="image_command", metavar="SUBCOMMAND")
    image_sub.required = True
    e = image_sub.add_parser("extract", help="extract every file of a LittleFS flash image")
    e.add_argument("image", metavar="FLASH.BIN")
    e.add_argument("--board", choices=sorted(PROG_SIZE), help="flash geometry of the board (LittleFS images)")
    e.add_argument("out_dir", metavar="OUT_DIR")
    e.add_argument("--offset", type=lambda s: int(s, 0), default=0,
                   help="where the filesystem starts in the dump (bytes; 0x... accepted)")
    e.add_argument("--block-count", type=int, default=None, help="filesystem size in 4096-byte blocks")
    e.add_argument("--force", action="store_true", help="extract into a non-empty OUT_DIR")
    e.set_defaults(func=cmd_image_extract)
    from minitools import flashregion
    flashregion.add_extract_args(e, cmd_image_extract)  # --region: a miniflash journal (FORMAT.md 6)
    flashregion.add_pull(image_sub)  # mini image pull: a region read off a running board
