"""The virtual board's serial input: held while code runs, Ctrl-C as a SIGINT at a safe point.

Mixed into the Supervisor (board_supervisor.py), which owns the attributes declared
below. Input from the client waits ("held") while the interpreter runs code and is
written to the pty once the REPL reads again: the unix port flushes its terminal
input when it (re)enters the REPL, which a board's UART does not. Ctrl-C bypasses
that queue; while code runs it becomes a SIGINT (see pump_input and safe_point).
"""
from __future__ import annotations

import os
import signal
import subprocess
import termios
import time

from typing import TYPE_CHECKING

if TYPE_CHECKING or __package__:  # installed: the package miniboard (mini-board); pyright reads this branch
    from miniboard.interpreter_watch import InterpreterWatch
else:  # run as a script: boards/virtual is sys.path[0]
    from interpreter_watch import InterpreterWatch

INTR = None                      # an input item: Ctrl-C, delivered as SIGINT while code runs

HOLD_INPUT = 0.5      # input that arrives while code runs waits this long for the REPL...
HOLD_AFTER_INTR = 5.0  # ...or this long after a Ctrl-C (the program is winding down)
INTR_SPACING = 0.25   # Ctrl-Cs closer than this are one: a program winding down is not hit again
SETTLE = 0.02         # after typing into the REPL, how long before deciding where a Ctrl-C goes
INTR_WAIT = 5.0       # how long a Ctrl-C waits for the boot, a SIGINT handler, or a safe point
RUNNING_FLAG = termios.ECHOCTL  # no effect without ECHO: only a marker
READY_CC = termios.VEOL2  # an unused control character (non-canonical mode): vboot.py's "ready" mark


class InputPump(InterpreterWatch):
    """The input side of the Supervisor."""

    proc: subprocess.Popen[bytes] | None
    master: int | None                       # the pty's master side, while an interpreter runs
    slave_name: str
    held: list[tuple[float, bytes | None]]   # [(arrival time, bytes or INTR)]
    last_intr: float
    last_write: float
    intr_since: float | None
    flow_stopped: bool
    injected: bool
    eof: bool
    phase: str
    reset_typed: bool

    def log(self, message):
        raise NotImplementedError

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
            if item is not None and running and any(queued is INTR for _, queued in self.held) \
                    and not self.reading_stdin():
                # A Ctrl-C goes ahead of what was typed before it while code runs: that input
                # waits for the REPL anyway (on a board it sits in the UART buffer, which the
                # REPL reads after the KeyboardInterrupt). mpremote's "\r\x03" then interrupts
                # at once instead of after HOLD_INPUT.
                first = [queued is INTR for _, queued in self.held].index(True)
                self.held.insert(0, self.held.pop(first))
                continue
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
            if not running and b"\x04" in item[:written]:
                self.reset_typed = True  # Ctrl-D typed at the REPL: a soft reset someone asked for
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
            self.injected = bool(self.write_board(b"\x01"))
