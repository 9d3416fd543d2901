"""`mini tail`: print a device journal's records as they are appended.

Each poll is one mpremote exchange, which interrupts a running program (Ctrl-C),
as any mpremote command does. `--resume` is for a board that runs its app from
main.py: after each poll, tail soft-resets the board (Ctrl-B to leave the raw
REPL, then Ctrl-D at the REPL), so main.py runs again and recovers from its
journal: the app keeps running between polls instead of stopping at the first one.
"""
import signal
import sys
import time

from minitools.follower import Follower
from minitools.mpremote_link import DeviceError, check_port, fail


def resume_app(port):
    """Soft-reset the board at its friendly REPL (mpremote leaves it there), so main.py runs again."""
    try:
        import serial  # pyserial, installed with mpremote
    except ImportError:
        raise DeviceError("--resume needs pyserial (pip install mpremote)")
    try:
        line = serial.serial_for_url(port, baudrate=115200, timeout=1)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise DeviceError("%s: cannot reopen the port to resume the app (%s)" % (port, exc))
    try:
        line.write(b"\r\x02")  # leave the raw REPL if a command left the board in it
        line.write(b"\x04")    # Ctrl-D at the REPL: a soft reboot, which runs boot.py and main.py
        line.flush()
    finally:
        line.close()


class AppResumer:
    """--resume: knows whether a poll has stopped the app since the last restart.

    Ctrl-D is sent only then, when the board sits at its REPL: typed into a running
    app, it would wait in a real board's UART buffer and reboot it later.
    """

    def __init__(self, port):
        self.port = port
        self.stopped = False

    def poll(self, follower):
        self.stopped = True  # the poll's mpremote session interrupts the app
        return follower.poll()

    def resume(self):
        if self.stopped:
            resume_app(self.port)
            self.stopped = False


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops tail as Ctrl-C does: --resume restarts the app first


def cmd_tail(args):
    app = AppResumer(args.port) if args.resume else None
    if app is not None:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        check_port(args.port)
        follower = Follower(args.port, args.journal, args.lines, args.raw)
        if args.follow and app is None:
            sys.stderr.write("mini tail: each poll stops a program running on the board (main.py), as any "
                             "mpremote command does; --resume restarts it after each poll\n")
        lost = waiting = False
        while True:
            try:
                more = app.poll(follower) if app is not None else follower.poll()
                if app is not None and not more:
                    app.resume()
                if lost:
                    sys.stderr.write("mini tail: %s is back\n" % args.port)
                    lost = False
            except FileNotFoundError:
                if not args.follow:
                    raise DeviceError("%s: no such file or directory on the device" % follower.journal)
                if not waiting:
                    sys.stderr.write("mini tail: waiting for %s to appear\n" % follower.journal)
                    waiting = True
                if app is not None:
                    app.resume()  # the app may be what creates it
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
        return fail("tail", exc)
    except KeyboardInterrupt:
        return 0
    finally:
        if app is not None:
            try:
                app.resume()  # a poll stopped it: never leave the app stopped
            except (DeviceError, KeyboardInterrupt):
                pass
