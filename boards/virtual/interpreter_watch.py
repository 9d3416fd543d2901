"""What the interpreter of the virtual board is doing, seen from /proc (Linux).

The supervisor (board_supervisor.py) delivers a Ctrl-C as a SIGINT only at a safe
point: never while littlefs runs. These are the looks into /proc/PID it decides with.
"""
import os
import signal

# Syscall numbers, to see from /proc/PID/syscall where the interpreter is blocked:
# "stdio" read/readv/write/writev (a safe point when on fd 0-2); "wait": sleeps and polls.
SYSCALLS = {
    "x86_64": {"stdio": (0, 1, 19, 20), "stdin": (0, 19), "wait": (7, 23, 35, 61, 230, 232, 270, 271, 281)},
    "aarch64": {"stdio": (63, 64, 65, 66), "stdin": (63, 65), "wait": (22, 72, 73, 101, 115, 260)},
}.get(os.uname().machine, {"stdio": (), "stdin": (), "wait": ()})



class InterpreterWatch:
    """Mixed into the Supervisor: self.proc is the running interpreter (or None)."""

    proc = None

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

    def io_calls(self):
        """How many read and write syscalls the interpreter made so far (/proc/PID/io)."""
        try:
            with self.proc_file("io") as f:
                fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
            return int(fields["syscr"]) + int(fields["syscw"])
        except (OSError, KeyError, ValueError):
            return None

