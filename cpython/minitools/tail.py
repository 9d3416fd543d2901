"""`mini tail`: print a device journal's records as they are appended.

Each poll is one mpremote exchange, which interrupts a running program (Ctrl-C),
as any mpremote command does. `--resume` is for a board that runs its app from
main.py: after each poll, tail soft-resets the board (Ctrl-B to leave the raw
REPL, then Ctrl-D at the REPL), so main.py runs again and recovers from its
journal: the app keeps running between polls instead of stopping at the first one.
"""
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


def cmd_tail(args):
    try:
        check_port(args.port)
        follower = Follower(args.port, args.journal, args.lines, args.raw)
        lost = waiting = False
        while True:
            try:
                more = follower.poll()
                if args.resume and not more:
                    resume_app(args.port)
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
        return fail("tail", exc)
    except KeyboardInterrupt:
        return 0
