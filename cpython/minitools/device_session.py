"""One mpremote connection, in this process, for one exchange or a few: `mini tail`'s polls.

A poll of `mini tail --resume` used to be two connections (an `mpremote exec` process,
then another to soft-reset the board) and a process to start: on the virtual board each
connection also ends in pyserial's 0.3 s pause after closing a socket://. One session
does the exchange and the restart on one connection, so a poll cycle is shorter and new
records reach the screen sooner. The connection is closed after each poll, as an
`mpremote` command's is: between polls the port is free for other tools.

Connecting uses mpremote's own `connect` (its do_connect), so PORT is anything
`mpremote connect` takes.
"""
import argparse
import contextlib
import sys
import types

from minitools.mpremote_link import DeviceError, answer


class DeviceSession:
    """`with DeviceSession(port) as session:` connects and enters the raw REPL (which
    interrupts a running program, as any mpremote command does); eval() runs code;
    restart_app() leaves the raw REPL and soft-resets the board, so main.py runs again."""

    def __init__(self, port):
        self.port = port
        self.transport = None

    def __enter__(self):
        try:
            from mpremote.commands import CommandError, do_connect
            from mpremote.transport import TransportError
        except ImportError:
            raise DeviceError("mpremote is not installed (pip install mpremote)")
        self._errors = (CommandError, TransportError, OSError)
        holder = types.SimpleNamespace(transport=None)
        with self._quiet():
            try:
                do_connect(holder, argparse.Namespace(device=[self.port]))
                self.transport = holder.transport
                self.transport.enter_raw_repl(soft_reset=False)
            except BaseException as exc:
                self._close()
                if isinstance(exc, self._errors):
                    raise DeviceError("%s: %s" % (self.port, exc))
                raise
        return self

    def __exit__(self, *exc_info):
        self._close()
        return False

    def eval(self, code):
        """Run code that prints PREFIX + JSON on one line; return that value."""
        from mpremote.transport import TransportExecError
        with self._quiet():
            try:
                out = self._connected().exec(code)
            except TransportExecError as exc:
                lines = exc.error_output.strip().splitlines() or ["the device raised an error"]
                raise DeviceError("%s: %s" % (self.port, lines[-1]))
            except self._errors as exc:
                raise DeviceError("%s: %s" % (self.port, exc))
        return answer(self.port, out)

    def restart_app(self):
        """Ctrl-B to the friendly REPL, then Ctrl-D: a soft reboot, which runs boot.py and main.py
        (from the raw REPL, Ctrl-D would reboot without running main.py)."""
        with self._quiet():
            try:
                transport = self._connected()
                transport.exit_raw_repl()
                transport.serial.write(b"\x04")
                transport.serial.flush()
            except self._errors as exc:
                raise DeviceError("%s: cannot restart the app (%s)" % (self.port, exc))

    def _connected(self):
        if self.transport is None:
            raise DeviceError("%s: not connected (use the session in a with block)" % self.port)
        return self.transport

    def _close(self):
        transport, self.transport = self.transport, None
        if transport is not None:
            try:
                if transport.in_raw_repl:
                    transport.exit_raw_repl()
                transport.close()
            except OSError:
                pass  # the port is gone: nothing left to close

    @staticmethod
    def _quiet():
        # mpremote prints what it read when it cannot enter the raw REPL: to stderr, not
        # into tail's records on stdout
        return contextlib.redirect_stdout(sys.stderr)
