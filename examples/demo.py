"""The mini demo: data that survives power cuts, on a laptop and on a (virtual) board.

    ./run demo [--keep] [--workdir DIR]

1. CPython: a logger writes a journal and is killed (SIGKILL) mid-run; reopening it
   recovers every reading it acknowledged.
2. A virtual ESP32 (the real MicroPython unix port, LittleFS on a flash image): a sensor
   app counts readings (ministate) and queues them for upload (miniqueue). We cut its
   power twice at random moments; it reboots and carries on. Then the host pulls the
   data over the serial line (mpremote), verifies it, and shows it.

Its files (the CPython journal, the flash image, the board's console log, the pulled
data) go to a temporary folder that is removed at the end, unless --keep (or
--workdir DIR, or MINI_DEMO_KEEP=1 in the environment).
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGGER = os.path.join(TOP, "examples", "demo_logger.py")
BOARD = os.path.join(TOP, "boards", "virtual", "board.py")
ENV = dict(os.environ, PYTHONUNBUFFERED="1",
           PYTHONPATH=os.pathsep.join([os.path.join(TOP, p) for p in ("shared", "cpython", "examples")]))


def say(text=""):
    print(text, flush=True)


def run(cmd, check=True):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=TOP, env=ENV)
    out = proc.stdout.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise SystemExit("%s failed:\n%s" % (" ".join(cmd), out))
    return out


# ---------------------------------------------------------------- part 1: CPython

def cpython_part(work):
    say("== 1. CPython: a journal on this machine's disk")
    journal = os.path.join(work, "cpython", "journal.jsonl")
    proc = subprocess.Popen([sys.executable, LOGGER, "log", journal], stdout=subprocess.PIPE, cwd=TOP, env=ENV)
    acked = 0
    while acked < 300:
        acked = int(proc.stdout.readline().split()[1])
    time.sleep(random.uniform(0, 0.02))
    os.kill(proc.pid, signal.SIGKILL)
    for line in proc.stdout.read().splitlines():
        acked = int(line.split()[1])
    proc.wait()
    lines = run([sys.executable, LOGGER, "recover", journal]).splitlines()
    last = int(lines[0].split()[1])
    say("  the logger acknowledged readings up to #%d, then was killed (SIGKILL)" % acked)
    say("  reopened: the journal ends at #%d -> acknowledged readings lost: %d" % (last, max(0, acked - last)))
    say("  its last line, as `cat` shows it:")
    with open(journal, "rb") as f:
        say("    " + f.read().splitlines()[-1].decode())
    say()
    return max(0, acked - last)


# ---------------------------------------------------------------- part 2: the board

def console(image):
    try:
        with open(image + ".console.log", "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def wait_for(image, pattern, count, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(re.findall(pattern, console(image))) >= count:
            return
        time.sleep(0.05)
    raise SystemExit("the board did not print %r in time; console:\n%s" % (pattern, console(image)[-2000:]))


def board_part(work):
    say("== 2. A virtual ESP32: MicroPython with LittleFS on a 1 MiB flash image")
    image = os.path.join(work, "esp32-flash.bin")
    address = run([sys.executable, BOARD, "start", "--image", image, "--board", "esp32",
                   "--preload", "--main", os.path.join(TOP, "examples", "sensor_app.py")]).strip()
    say("  flashed the bricks to /lib and examples/sensor_app.py as /main.py; the board is on %s" % address)
    say("  (mpremote connect %s resume ... talks to it like a USB board)" % address)
    acked_counts = []
    for cut in (1, 2):
        wait_for(image, r"ack count", 60 * cut + random.randint(0, 40))
        run([sys.executable, BOARD, "stop", "--image", image, "--power-cut"])
        text = console(image)
        counts = re.findall(r"ack count (\d+) (\d+)", text)
        acked_counts.append(int(counts[-1][1]))
        say("  power cut %d: the app had acknowledged count = %d" % (cut, acked_counts[-1]))
        old_address = address
        address = run([sys.executable, BOARD, "start", "--image", image]).strip()
        say("    power back on at %s: the board booted again from the same flash" % time.strftime("%H:%M:%S"))
        if address != old_address:
            say("    its serial line is now %s: a new port, because the board's process died with the power and"
                % address)
            say("    the new one listens on a free TCP port (a real board's USB port can come back under another name)")
        wait_for(image, r"sensor_app: up", cut + 1)
        up = re.findall(r"sensor_app: up, count (\d+), seq (\d+), outbox (\d+)", console(image))[-1]
        say("    rebooted and recovered: count = %s, journal seq %s, %s messages waiting in the outbox" % up)
        if int(up[0]) < acked_counts[-1]:
            say("    BUG: an acknowledged count was lost")
            return 1
    time.sleep(0.5)

    say()
    say("== 3. On the host: pull the data over the serial line, verify it, look at it")
    pulled = os.path.join(work, "pulled")
    say("  $ mini pull --port %s :data %s" % (address, "pulled"))
    for line in run([sys.executable, "-m", "minitools.cli", "pull", "--port", address, ":data", pulled]).splitlines():
        if line.strip() and "\r" not in line:
            say("    " + line.replace(work + "/", ""))
    run([sys.executable, BOARD, "stop", "--image", image])
    say("  $ mini verify pulled/state pulled/outbox")
    verify = run([sys.executable, "-m", "minitools.cli", "verify",
                  os.path.join(pulled, "state"), os.path.join(pulled, "outbox")], check=False)
    for line in verify.splitlines():
        say("    " + line.replace(work + "/", ""))
    say("  $ mini state pulled/state --mutators sensor_app")
    state = json.loads(run([sys.executable, "-m", "minitools.cli", "state", os.path.join(pulled, "state"),
                            "--mutators", "sensor_app"]))
    say("    count %d at seq %d: the snapshot at seq %d plus the journal after it (the app kept counting after the reboot)" % (
        state["state"]["count"], state["seq"], state["snapshot_seq"]))
    stats = json.loads(run([sys.executable, "-m", "minitools.cli", "stats", os.path.join(pulled, "outbox"), "--json"]))
    say("  $ mini stats pulled/outbox")
    say("    %d ready, %d in flight, %d dead; journal seq %s..%s in %d segment(s)" % (
        stats["ready"], stats["in_flight"], stats["dead"], stats["first_seq"], stats["last_seq"], stats["segments"]))
    say("  $ mini cat pulled/outbox --from-seq %d   (the queue's last events, plain JSON)" % max(1, stats["last_seq"] - 3))
    for line in run([sys.executable, "-m", "minitools.cli", "cat", os.path.join(pulled, "outbox"),
                     "--from-seq", str(max(1, stats["last_seq"] - 3))]).splitlines():
        say("    " + line)
    lost = 0 if (state["state"]["count"] >= acked_counts[-1] and "OK" in verify and "corrupt" not in verify) else 1
    say()
    return lost


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="demo.py", description=(__doc__ or "").split("\n\n")[0].strip(),
        epilog="1. a logger on CPython is killed (SIGKILL) and recovers; 2. a virtual ESP32 running a sensor app "
               "loses power twice; 3. the host pulls, verifies and shows its data. About 10 s.")
    parser.add_argument("--keep", action="store_true",
                        help="keep the output folder (journal, flash image, console log, pulled data) and say where")
    parser.add_argument("--workdir", metavar="DIR",
                        help="put the output in DIR (a new or empty folder) and keep it")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.workdir:
        work = os.path.abspath(args.workdir)
        if os.path.isdir(work) and os.listdir(work):
            raise SystemExit("demo.py: %s is not empty: give a new or empty folder" % work)
        os.makedirs(work, exist_ok=True)
    else:
        work = tempfile.mkdtemp(prefix="mini-demo-")
    keep = bool(args.keep or args.workdir or os.environ.get("MINI_DEMO_KEEP"))
    say(__doc__.split("\n\n")[0].strip())
    say()
    try:
        lost = cpython_part(work)
        lost += board_part(work)
        say("RESULT: %s" % ("every acknowledged reading survived every crash and power cut" if lost == 0
                            else "SOMETHING WAS LOST (this is a bug)"))
        return 1 if lost else 0
    finally:
        subprocess.run([sys.executable, BOARD, "stop", "--image", os.path.join(work, "esp32-flash.bin"),
                        "--power-cut"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        if keep:
            say("kept the output in %s (the CPython journal, the flash image and its console log, pulled/)" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
