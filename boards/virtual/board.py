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
import json
import os
import select
import signal
import subprocess
import sys
import time

if __package__:  # installed: the package miniboard (mini-board)
    from miniboard.board_files import (BOARDS, BoardError, alive, brick_sources, check_sources, files_of,
                                       install_files, lock_image, micropython_path, prepare_image, read_state)
    from miniboard.board_supervisor import Supervisor
else:  # run as a script: boards/virtual is sys.path[0]
    from board_files import (BOARDS, BoardError, alive, brick_sources, check_sources, files_of,
                             install_files, lock_image, micropython_path, prepare_image, read_state)
    from board_supervisor import Supervisor


# ------------------------------------------------------------------ commands

def cmd_start(args):
    files = files_of(args.image)
    micropython_path(args.micropython)
    pairs = []
    if args.preload:
        pairs += [(path, "/lib/" + os.path.basename(path)) for path in brick_sources()]
    if args.main:
        pairs.append((args.main, "/main.py"))
    check_sources(pairs)  # a start that fails on its arguments leaves no image behind
    lock = lock_image(files["image"])
    try:
        created = prepare_image(files["image"], args.size_kb, args.board)
        if pairs:
            try:
                install_files(files["image"], args.board, pairs, lock, args.micropython, args.fsync)
            except BoardError:
                if created:  # nobody else has seen it (we hold the lock): no half-installed image stays
                    os.unlink(files["image"])
                raise
        return _spawn_serve(args, files, lock)
    finally:
        os.close(lock)  # the supervisor has its own copy: the lock stays held until the board is off


def _spawn_serve(args, files, lock):
    ready_r, ready_w = os.pipe()
    cmd = [sys.executable, os.path.abspath(__file__), "serve", "--image", files["image"],
           "--board", args.board, "--port", str(args.port), "--host", args.host,
           "--heap-kb", str(args.heap_kb), "--ready-fd", str(ready_w), "--lock-fd", str(lock)]
    if args.micropython:
        cmd += ["--micropython", args.micropython]
    if args.fsync:
        cmd.append("--fsync")
    with open(files["log"], "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, pass_fds=(ready_w, lock), cwd="/")
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
    # from start: the lock start took, inherited; held from before start touched the image
    lock = args.lock_fd if args.lock_fd is not None else lock_image(files["image"])
    try:
        if not os.path.exists(files["image"]):
            prepare_image(files["image"], args.size_kb, args.board)
        Supervisor(args, lock).serve()
    finally:
        os.close(lock)
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
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        mp = state.get("micropython_pid")
        if alive(mp):
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
    p.add_argument("--lock-fd", type=int, default=None, help=argparse.SUPPRESS)
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
