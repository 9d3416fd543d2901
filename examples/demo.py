"""The mini demo: a sensor logger is killed mid-write (SIGKILL, like a power cut)
on CPython and on the MicroPython unix port (LittleFS on a flash image), then the
journal is recovered and we show what survived: every acknowledged reading.

    ./run demo
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGGER = os.path.join(TOP, "examples", "demo_logger.py")


def run_and_kill(cmd, min_acks):
    """Start cmd, let it acknowledge at least min_acks records, then SIGKILL it mid-run."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # every ack reaches us as soon as it is printed
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=TOP, env=env)
    acked = 0
    while acked < min_acks:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("the logger stopped: " + proc.stderr.read().decode())
        if line.startswith(b"ack "):
            acked = int(line.split()[1])
    time.sleep(random.uniform(0, 0.02))  # land the cut at an arbitrary point of a write
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.stdout.read()  # acks printed before the kill landed
    proc.wait()
    for line in rest.splitlines():
        if line.startswith(b"ack "):
            acked = int(line.split()[1])
    return acked


def recover(cmd):
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=TOP)
    if out.returncode != 0:
        raise SystemExit(out.stdout.decode())
    return out.stdout.decode().splitlines()


def story(title, log_cmd, recover_cmd, cycles=3):
    print("== %s" % title)
    lost_total = 0
    for cycle in range(1, cycles + 1):
        acked = run_and_kill(log_cmd, 100 * cycle)
        lines = recover(recover_cmd)
        last = int(lines[0].split()[1])
        lost = max(0, acked - last)
        lost_total += lost
        print("  boot %d: the logger acknowledged readings up to #%d, then lost power (SIGKILL)" % (cycle, acked))
        for line in lines[1:]:
            if line.startswith("torn_tail"):
                print("          recovery found a half-written record: " + line[len("torn_tail "):])
        print("          after reboot the journal ends at #%d; acknowledged readings lost: %d" % (last, lost))
    print("  the last readings that survived:")
    for line in lines[1:]:
        if line.startswith("record"):
            print("    " + line)
    print("  RESULT: %s" % ("no acknowledged reading was lost" if lost_total == 0 else "%d LOST (bug)" % lost_total))
    print()
    return lost_total


def main():
    print(__doc__.split("\n\n")[0].replace("\n", " "))
    print()
    work = tempfile.mkdtemp(prefix="mini-demo-")
    mp = shutil.which("micropython")
    if mp is None:
        raise SystemExit("micropython is not installed: run this through ./run demo")
    try:
        journal = os.path.join(work, "cpython", "journal.jsonl")
        lost = story("CPython: a journal on the host disk",
                     [sys.executable, LOGGER, "log", journal],
                     [sys.executable, LOGGER, "recover", journal])
        image = os.path.join(work, "esp32-flash.bin")
        with open(image, "wb") as f:
            f.write(b"\xff" * 4096 * 128)  # 512 KiB of erased flash
        lost += story("MicroPython unix port: LittleFS on a 512 KiB ESP32-geometry flash image",
                      [mp, LOGGER, "log", "logs/journal.jsonl", image],
                      [mp, LOGGER, "recover", "logs/journal.jsonl", image])
        print("The journal is plain JSON lines; its header and first record:")
        with open(journal, "rb") as f:
            print("  " + f.readline().decode().strip())
            print("  " + f.readline().decode().strip())
        return 1 if lost else 0
    finally:
        if os.environ.get("MINI_DEMO_KEEP") is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
