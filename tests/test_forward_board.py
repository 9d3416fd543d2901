# miniforward on the virtual board (the real MicroPython unix port, LittleFS on a flash
# image): umqtt.simple installed with `mpremote mip install` from micropython-lib, the
# board forwarding through a loopback proxy that cuts its connections at random bytes
# to mosquitto and `mini ingest`, with power cuts (SIGKILL) while it forwards.
import os
import random
import re
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "forward"))
import mqttkit  # noqa: E402
import reliability  # noqa: E402

TOP = mqttkit.TOP
BOARD = os.path.join(TOP, "boards", "virtual", "board.py")
APP = os.path.join(TOP, "tests", "forward", "board_app.py")
POWER_CUTS = reliability.pick(ci=2, long=12)


def sh(*cmd, timeout=120):
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=TOP,
                          timeout=timeout)
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, out
    return out


def console(image):
    try:
        with open(image + ".console.log", "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def test_virtual_board_forwards_exactly_once_through_power_cuts_and_cut_connections(tmp_path):
    started = time.time()
    rng = random.Random(int(os.environ.get("MINI_FORWARD_SEED", "16")))
    package = mqttkit.umqtt_package(str(tmp_path / "mip"))
    if package is None:
        pytest.skip("no MicroPython source tarball with micropython-lib in ../shared/micropython (MINI_MICROPYTHON_SRC)")
    broker = mqttkit.Broker(tmp_path / "broker")
    proxy = mqttkit.Proxy(broker.port, cut_after=(100, 6000), seed=rng.randrange(1 << 30))
    db = tmp_path / "readings.db"
    ing = mqttkit.ingester(db, broker.port)
    image = str(tmp_path / "flash.bin")
    count = 150
    try:
        address = sh(sys.executable, BOARD, "start", "--image", image, "--board", "esp32").strip()
        mpremote = [sys.executable, "-m", "mpremote", "connect", address, "resume"]
        out = sh(*mpremote, "mip", "install", "--target", "/lib", package)
        assert "Done" in out, out
        with open(APP) as f:
            app = f.read().replace("PORT = 0", "PORT = %d" % proxy.port).replace(
                'DEVICE = "board"', 'DEVICE = "vboard1"').replace("COUNT = 0", "COUNT = %d" % count)
        with open(str(tmp_path / "main.py"), "w") as f:
            f.write(app)
        sh(*mpremote, "mip", "install", "--target", "/lib",
           os.path.join(TOP, "micropython", "miniqueue", "package.json"),  # the app's queue
           os.path.join(TOP, "micropython", "miniforward", "package.json"), "+",
           "fs", "cp", str(tmp_path / "main.py"), ":main.py")
        assert "umqtt" in sh(*mpremote, "fs", "ls", ":lib")
        sh(sys.executable, BOARD, "stop", "--image", image, "--power-cut")
        for cut in range(POWER_CUTS):  # boot, forward a while, lose power
            sh(sys.executable, BOARD, "start", "--image", image)
            before = console(image).count("\nput ")
            deadline = time.monotonic() + 60
            want = rng.randint(10, 60)
            while console(image).count("\nput ") - before < want and time.monotonic() < deadline:
                time.sleep(0.05)
            sh(sys.executable, BOARD, "stop", "--image", image, "--power-cut")
        sh(sys.executable, BOARD, "start", "--image", image)  # the last boot runs to the end
        deadline = time.monotonic() + 240
        while not re.search(r"\n(not )?idle: ", console(image)) and time.monotonic() < deadline:
            time.sleep(0.2)
        log = console(image)
        sh(sys.executable, BOARD, "stop", "--image", image, "--power-cut")
    finally:
        subprocess.run([sys.executable, BOARD, "stop", "--image", image, "--power-cut"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        mqttkit.stop(ing)
        proxy.close()
        broker.stop()
    assert re.search(r"\nidle: ", log), log[-3000:]
    returned = {}
    for mid, boot, n in re.findall(r"\nput (\d+) (\d+) (\d+)", log):
        returned.setdefault("vboard1", []).append((int(mid), int(boot), int(n)))
    puts = len(returned["vboard1"])
    rows = mqttkit.check_exactly_once(db, returned)
    reliability.record(suite="forward", brick="miniforward", fs="lfs2-esp32",
                       config="virtual board, umqtt.simple, batch 4, via a cutting proxy",
                       cut_points=POWER_CUTS + proxy.cuts, checks=rows, acked_ops=puts, acked_lost=0, violations=0,
                       seconds=round(time.time() - started, 1),
                       notes="%d power cuts; %d connections cut by the proxy" % (POWER_CUTS, proxy.cuts))
    print("board: puts", puts, "rows", rows, "proxy cuts", proxy.cuts, "power cuts", POWER_CUTS)
    assert puts >= count and rows >= puts
    assert len(set(re.findall(r"incarnation (\w+)", log))) == 1  # power cuts keep the incarnation


def test_demo_forward_runs_and_loses_nothing():
    """`./run demo forward` (examples/demo_forward.py) must keep working."""
    if mqttkit.umqtt_package(os.path.join(os.environ.get("TMPDIR", "/tmp"), "mini-umqtt-probe")) is None:
        pytest.skip("no MicroPython source tarball with micropython-lib in ../shared/micropython")
    proc = subprocess.run([sys.executable, os.path.join(TOP, "examples", "demo_forward.py")], cwd=TOP,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, out
    assert "(0 lost, 0 duplicates)" in out and "idle: sent" in out, out
