"""The virtual board's supervisor: micropython on a pty, bridged to one TCP client.

See Supervisor's docstring, and README.md in this directory.
"""
import errno
import fcntl
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import termios
import time
import tty

from typing import TYPE_CHECKING

if TYPE_CHECKING or __package__:  # installed: the package miniboard (mini-board); pyright reads this branch
    from miniboard.board_files import BoardError, VBOOT, HERE, files_of, micropython_path, write_json
    from miniboard.board_input import INTR, READY_CC, RUNNING_FLAG, InputPump
else:  # run as a script: boards/virtual is sys.path[0]
    from board_files import BoardError, VBOOT, HERE, files_of, micropython_path, write_json
    from board_input import INTR, READY_CC, RUNNING_FLAG, InputPump

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_BANNER = b'Type "help()" for more information.'
RAW_MARK = b"\x1b]vboot-repl\x07"  # printed by vboot.py before the REPL starts (raw-mode reboot)
SOFT_REBOOT = b"MPY: soft reboot\r\n"

SEND_TIMEOUT = 10.0
CONSOLE_LIMIT = 16 << 20  # the console log is rotated to IMAGE.console.log.1 past this size

try:
    import ctypes
    _PRCTL = ctypes.CDLL(None).prctl
except (ImportError, OSError, AttributeError):
    _PRCTL = None  # not Linux: the pty's hangup (SIGHUP) still ends the interpreter with the supervisor


def _die_with_parent():
    """In the child: SIGKILL when the supervisor dies (a power cut; never two interpreters on one image)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Supervisor(InputPump):
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

    def __init__(self, args, lock):
        self.args = args
        self.lock = lock  # the image's lock (lock_image), held by the caller until the board is off
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
        self.boots = []            # boot times in the last 10 s, but for soft resets typed at the REPL
        self.reset_typed = False   # a Ctrl-D was typed at the REPL since the last boot
        self.boot_count = 0
        self.eof = False
        self.console = open(self.files["console"], "ab", buffering=0)

    def log(self, message):
        sys.stderr.write("%s board: %s\n" % (time.strftime("%H:%M:%S"), message))
        sys.stderr.flush()

    # -- lifecycle

    def serve(self):
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
            try:  # while the lock is still held: a board started next writes its own
                os.unlink(self.files["state"])
            except OSError:
                pass

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
        # boots that nobody typed a Ctrl-D for (main.py calling sys.exit(), a crash), in the last 10 s
        self.boots = [t for t in self.boots if now - t < 10] + ([] if self.reset_typed else [now])
        self.reset_typed = False
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

        # the interpreter holds the image's lock too: if the supervisor dies, the lock
        # stays held until the interpreter (SIGKILLed with it) has stopped writing
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=HERE, pass_fds=(self.lock,),
                                     start_new_session=True, preexec_fn=controlling_tty, close_fds=True)
        self.slave_name = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.flow_stopped = False
        self.eof = False
        self.intr_since = None
        self.last_intr = -1e9  # a Ctrl-C to the last interpreter must not hold input back from this one
        self.phase = "rawboot" if mode == "raw" else "run"
        self.rawbuf = b""
        self.injected = False
        self.raw = mode == "raw"
        self.log("boot (%s, %s, micropython pid %d)" % (mode, self.args.board, self.proc.pid))
        write_json(self.files["state"], {
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
            # after the pty's EOF, nothing wakes select when the interpreter is reaped: without
            # a short timeout each soft reboot started up to 0.2 s late, time taken from the app
            # that `mini tail --resume` restarts between two polls
            busy = self.held or self.phase == "rawboot" or self.stopping or self.eof
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
        if len(self.boots) >= 5:  # a boot loop (say main.py calls sys.exit()): slow it down (not typed resets)
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
