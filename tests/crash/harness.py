# Shared helpers of the SIGKILL crash tests (CPython only): run a worker script as a
# child interpreter, read the lines it writes to a pipe, and kill it with SIGKILL
# after a random delay.
#
# Workers write one line per os.write() call on their stdout. A write of fewer than
# PIPE_BUF bytes to a pipe is atomic, so a kill never leaves half a line: every
# complete line the child wrote before it died is read back (the pipe keeps it after
# the writer is gone), and a line that was never written never was an ack.
#
# Used by tests/test_crash_ministate.py and tests/test_crash_miniqueue.py.
import os
import select
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = os.path.join(ROOT, "shared")

START_TIMEOUT = 30.0  # seconds to wait for a child's first line


def child_env():
    """The environment of a child: shared/ first on PYTHONPATH, unbuffered stdout."""
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = SHARED + (os.pathsep + old if old else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def emit(line):
    """For workers: write one line to stdout in a single write() (atomic on a pipe)."""
    os.write(1, line.encode() + b"\n")


class Child:
    """A worker process whose stdout is a pipe read by the test."""

    def __init__(self, script, args, stderr_path, delay, aim=None):
        """Kill the child `delay` seconds after its first line. With aim=(LINE, NTH,
        DELAY2), kill it DELAY2 seconds after its NTH line equal to LINE (or starting with
        LINE and a space: "got" aims at "got 12 5 1") if that comes first: to land kills
        inside a phase the child marks with LINE, or right after an operation returned."""
        self.script = script
        self.stderr_path = stderr_path
        self.delay = delay           # seconds from the first line to the SIGKILL
        self.kill_at = None          # monotonic deadline, set at the first line
        self.aim = None
        if aim is not None:
            self.aim = (aim[0].encode(), aim[1], aim[2])
        self.seen = 0                # lines equal to the aimed one so far
        self.scanned = 0             # bytes of self.data scanned for them
        self.data = b""
        self.killed = False
        self.eof = False
        with open(stderr_path, "wb") as err:
            # -u: unbuffered stdout; -S: the workers need only the standard library
            # and shared/ (PYTHONPATH), and skipping site saves startup time on every kill.
            self.proc = subprocess.Popen(
                [sys.executable, "-u", "-S", script] + [str(a) for a in args],
                stdout=subprocess.PIPE, stderr=err, env=child_env())
        self.fd = self.proc.stdout.fileno()
        self.started = time.monotonic()

    def read_some(self):
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
            return
        self.data += chunk
        if self.kill_at is None and b"\n" in self.data:
            # Keep draining the pipe until the kill, so the child never blocks on it.
            self.kill_at = time.monotonic() + self.delay
        if self.aim is not None and self.seen < self.aim[1]:
            end = self.data.rfind(b"\n") + 1  # scan complete lines only
            for line in self.data[self.scanned:end].split(b"\n")[:-1]:
                if line == self.aim[0] or line.startswith(self.aim[0] + b" "):
                    self.seen += 1
                    if self.seen == self.aim[1]:
                        self.kill_at = min(self.kill_at, time.monotonic() + self.aim[2])
                        break
            self.scanned = end

    def kill(self):
        """SIGKILL the child, then collect every line it wrote before it died."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.killed = True
        self.proc.wait()
        while not self.eof:
            self.read_some()
        self.proc.stdout.close()
        if not self.killed or self.proc.returncode != -signal.SIGKILL:
            raise AssertionError("%s did not run until killed (rc=%s); its stderr:\n%s" % (
                os.path.basename(self.script), self.proc.returncode, self.stderr()))

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def lines(self):
        """The complete lines (a line without its newline was never written)."""
        return [line.decode() for line in self.data.split(b"\n")[:-1]]


def run_and_kill(children):
    """Run `children` (Child objects, already started) side by side; kill each one
    `child.delay` seconds after its first line. Returns when all are dead."""
    try:
        while True:
            now = time.monotonic()
            alive = [c for c in children if not c.killed and not c.eof]
            for c in children:
                if c.eof and not c.killed:
                    c.kill()  # it died on its own: kill() raises with its stderr
            if not alive:
                break
            for c in alive:
                if c.kill_at is not None and now >= c.kill_at:
                    c.kill()
                elif c.kill_at is None and now - c.started > START_TIMEOUT:
                    raise AssertionError("%s wrote nothing in %.0fs; its stderr:\n%s" % (
                        os.path.basename(c.script), START_TIMEOUT, c.stderr()))
            alive = [c for c in children if not c.killed and not c.eof]
            if not alive:
                break
            deadlines = [c.kill_at if c.kill_at is not None else c.started + START_TIMEOUT
                         for c in alive]
            wait = max(0.0, min(deadlines) - time.monotonic())
            ready, _, _ = select.select([c.fd for c in alive], [], [], wait)
            for c in alive:
                if c.fd in ready:
                    c.read_some()
    finally:
        for c in children:
            if c.proc.poll() is None:
                os.kill(c.proc.pid, signal.SIGKILL)
                c.proc.wait()
            if not c.proc.stdout.closed:
                c.proc.stdout.close()
    return [c.lines() for c in children]


def run_one(script, args, stderr_path, delay):
    """Start one worker, SIGKILL it `delay` seconds after its first line; return its lines."""
    return run_and_kill([Child(script, args, stderr_path, delay)])[0]


def phase_at_kill(lines, markers):
    """The last of `markers` (a set of line texts) among `lines`: where the child was
    when it was killed, to the granularity of its marker lines. None if there is none."""
    for line in reversed(lines):
        if line in markers:
            return line
    return None


def needs_sigkill():
    """The pytest mark for crash tests: they need CPython and a real SIGKILL."""
    import pytest
    return pytest.mark.skipif(sys.implementation.name != "cpython" or not hasattr(signal, "SIGKILL"),
                              reason="needs CPython and SIGKILL")
