"""`mini tail`: print a device journal's records as they are appended.

Each poll is one mpremote exchange, which interrupts a running program (Ctrl-C),
as any mpremote command does. `--resume` is for a board that runs its app from
main.py: after each poll, tail soft-resets the board (Ctrl-B to leave the raw
REPL, then Ctrl-D at the REPL), so main.py runs again and recovers from its
journal: the app keeps running between polls instead of stopping at the first one.
A poll and its restart share one connection (minitools.device_session), closed
after each poll, so other tools can use the port between polls.
"""
import signal
import sys
import time

from minitools.device_session import DeviceSession
from minitools.follower import Follower, NotJournal
from minitools.mpremote_link import DeviceError, check_port, fail


def resume_app(port):
    """Restart the app on a board that a stopped poll may have left anywhere: at a REPL, or in
    the middle of an exchange (say in raw-paste mode, where "\r\x02\x04" would only be more of
    the pasted code and the board would stay in the raw REPL). A session starts with a Ctrl-C,
    which ends whatever the board was doing, and waits for the raw REPL before the soft reset."""
    with DeviceSession(port) as session:
        session.restart_app()


class Poller:
    """One poll per connection (a DeviceSession): the exchange and, with --resume, the
    restart of the app, on the same connection.

    `stopped` says whether a poll may have stopped the app since it last restarted: it is set
    before a session connects and cleared only once the restart was sent, so that a signal
    landing anywhere in between errs towards one restart too many, never one too few. The app
    is restarted only when the board sits at its REPL, never typed into a running app (a
    Ctrl-D would wait in a real board's UART buffer and reboot it later); while more bytes
    are waiting, tail polls again at once and restarts the app after the last poll.
    """

    def __init__(self, port, resume):
        self.port = port
        self.resume = resume
        self.stopped = False

    def poll(self, follower):
        session = DeviceSession(self.port)
        if self.resume:
            self.stopped = True
        with session:
            try:
                more = follower.poll(session.eval)
            except FileNotFoundError:
                self._restart(session)  # the app may be what creates it
                raise
            if not more:
                self._restart(session)
            return more

    def _restart(self, session):
        if self.resume:
            session.restart_app()
            self.stopped = False

    def leave(self):
        """Never leave the app stopped: tail is stopping (Ctrl-C, SIGTERM) or the device was lost."""
        if self.resume and self.stopped:
            resume_app(self.port)
            self.stopped = False


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops tail as Ctrl-C does: --resume restarts the app first


def cmd_tail(args):
    poller = Poller(args.port, args.resume)
    if args.resume:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        check_port(args.port)
        follower = Follower(args.port, args.journal, args.lines, args.raw)
        if args.follow and not args.resume:
            sys.stderr.write("mini tail: each poll stops a program running on the board (main.py), as any "
                             "mpremote command does; --resume restarts it after each poll\n")
        lost = waiting = False
        while True:
            began = time.monotonic()
            try:
                more = poller.poll(follower)
                if lost:
                    sys.stderr.write("mini tail: %s is back\n" % args.port)
                    lost = False
            except FileNotFoundError as exc:
                if not args.follow:
                    raise DeviceError(getattr(exc, "error", "%s: no such file or directory on the device"
                                              % follower.journal))
                if not waiting:
                    sys.stderr.write("mini tail: %s\n" % getattr(exc, "waiting", "waiting for %s to appear"
                                                                    % follower.journal))
                    waiting = True
                more = False
            except NotJournal:
                raise  # waiting would not make it a journal: exit 2, --follow or not
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
            if not more:  # --interval is from the start of one poll to the next
                time.sleep(max(0.0, args.interval - (time.monotonic() - began)))
    except DeviceError as exc:
        return fail("tail", exc)
    except KeyboardInterrupt:
        return 0
    finally:
        if args.resume:  # a second SIGTERM must not cut the restart short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            poller.leave()
        except (DeviceError, KeyboardInterrupt):
            pass
