"""Talking to a device through mpremote: run a command, evaluate code, check a port.

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

PREFIX = "MINI-DEVICE"


class DeviceError(Exception):
    """One line on stderr, exit 2."""


def fail(command, exc):
    sys.stderr.write("mini %s: %s\n" % (command, exc))
    return 2


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


def error_line(proc):
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
        raise DeviceError("%s: %s" % (port, error_line(proc)))
    return proc.stdout


def device_eval(port, code, timeout=120):
    """Run code on the device; it prints PREFIX + JSON on one line: return that value."""
    return answer(port, mpremote(port, ["exec", code], timeout=timeout))


def answer(port, out):
    """The value the device printed as PREFIX + JSON on one line of `out` (bytes)."""
    for line in out.decode("utf-8", "replace").splitlines():
        if line.startswith(PREFIX + " "):
            try:
                return json.loads(line[len(PREFIX) + 1:])
            except ValueError:
                raise DeviceError("%s: the device's answer is not JSON: %r" % (port, line[:200]))
    raise DeviceError("%s: unexpected answer from the device: %r" % (port, out[-200:]))


def remote_path(path):
    path = path[1:] if path.startswith(":") else path
    path = path.rstrip("/") or "/"
    if "'" in path or "\\" in path or "\n" in path:
        raise DeviceError("%r: unsupported character in the device path" % path)
    return path


