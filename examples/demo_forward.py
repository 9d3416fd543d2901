"""The store-and-forward demo: a virtual board's readings reach the host database exactly once.

    ./run demo forward

A virtual ESP32 (the real MicroPython unix port, LittleFS on a flash image) logs readings
into a MiniQueue and forwards them with miniforward over umqtt.simple (installed on it
with `mpremote mip install`), through a loopback proxy that cuts its connections at random
bytes, to mosquitto and `mini ingest`. Its power is cut while it forwards; it boots and
carries on. Then the host database is queried: every reading the board acknowledged is
there exactly once.
"""
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(TOP, "tests", "forward"), os.path.join(TOP, "shared"), os.path.join(TOP, "cpython")]
import mqttkit  # noqa: E402

BOARD = os.path.join(TOP, "boards", "virtual", "board.py")
APP = os.path.join(TOP, "tests", "forward", "board_app.py")
COUNT = 120


def say(text=""):
    print(text, flush=True)


def sh(*cmd):
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=TOP, timeout=180)
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise SystemExit("%s failed:\n%s" % (" ".join(str(c) for c in cmd), out))
    return out


def console(image):
    try:
        with open(image + ".console.log", "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def main():
    work = tempfile.mkdtemp(prefix="mini-demo-forward-")
    package = mqttkit.umqtt_package(os.path.join(work, "mip"))
    if package is None:
        raise SystemExit("needs the MicroPython source tarball with micropython-lib in ../shared/micropython")
    say("== store and forward: a virtual board -> mosquitto -> mini ingest -> SQLite")
    broker = mqttkit.Broker(os.path.join(work, "broker"))
    proxy = mqttkit.Proxy(broker.port, cut_after=(200, 4000), seed=random.randrange(1 << 30))
    db = os.path.join(work, "readings.db")
    ingester = mqttkit.ingester(db, broker.port)
    image = os.path.join(work, "flash.bin")
    say("  mosquitto on 127.0.0.1:%d; the board's network goes through a proxy on :%d that cuts "
        "every connection after 200..4000 bytes" % (broker.port, proxy.port))
    try:
        address = sh(sys.executable, BOARD, "start", "--image", image, "--board", "esp32").strip()
        mpremote = [sys.executable, "-m", "mpremote", "connect", address, "resume"]
        sh(*mpremote, "mip", "install", "--target", "/lib", package)
        with open(APP) as f:
            app = f.read().replace("PORT = 0", "PORT = %d" % proxy.port).replace(
                'DEVICE = "board"', 'DEVICE = "esp32-demo"').replace("COUNT = 0", "COUNT = %d" % COUNT)
        with open(os.path.join(work, "main.py"), "w") as f:
            f.write(app)
        sh(*mpremote, "mip", "install", "--target", "/lib",
           os.path.join(TOP, "micropython", "miniqueue", "package.json"),  # the app's queue
           os.path.join(TOP, "micropython", "miniforward", "package.json"), "+",
           "fs", "cp", os.path.join(work, "main.py"), ":main.py")
        say("  the board has umqtt.simple (mpremote mip install) and miniforward; main.py logs %d readings "
            "per boot and forwards them" % COUNT)
        sh(sys.executable, BOARD, "stop", "--image", image, "--power-cut")
        sh(sys.executable, BOARD, "start", "--image", image)
        want = random.randint(30, 80)
        deadline = time.monotonic() + 60
        while console(image).count("\nput ") < want and time.monotonic() < deadline:
            time.sleep(0.05)
        sh(sys.executable, BOARD, "stop", "--image", image, "--power-cut")
        log = console(image)
        say("  power cut after %d readings were put (acknowledged by the queue on flash)" % log.count("\nput "))
        sh(sys.executable, BOARD, "start", "--image", image)
        deadline = time.monotonic() + 240
        while not re.search(r"\n(not )?idle: ", console(image)) and time.monotonic() < deadline:
            time.sleep(0.2)
        log = console(image)
        sh(sys.executable, BOARD, "stop", "--image", image)
        boots = re.findall(r"\nboot (\d+) incarnation (\w+) backlog (\d+)", log)
        say("  it booted again (incarnation %s kept, %s readings were waiting) and finished: %s" % (
            boots[-1][1], boots[-1][2], re.search(r"\n((not )?idle:[^\r\n]*)", log).group(1)))
    finally:
        subprocess.run([sys.executable, BOARD, "stop", "--image", image, "--power-cut"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mqttkit.stop(ingester)
        proxy.close()
        broker.stop()
    returned = {"esp32-demo": [(int(m), int(b), int(n)) for m, b, n in re.findall(r"\nput (\d+) (\d+) (\d+)", log)]}
    say("  the proxy cut %d connections" % proxy.cuts)
    say("")
    query = ("SELECT device, json_extract(payload, '$.r') AS boot, COUNT(*) AS readings, "
             "COUNT(DISTINCT id) AS ids, MIN(id), MAX(id) FROM messages GROUP BY device, boot")
    say("sqlite3 readings.db \"%s\"" % query)
    con = sqlite3.connect(db)
    say("device      boot  readings  distinct ids  first id  last id")
    for row in con.execute(query):
        say("%-11s %4d %9d %13d %9d %8d" % row)
    con.close()
    rows = mqttkit.check_exactly_once(db, returned)
    say("")
    say("the board acknowledged %d puts; the database holds %d rows: every acknowledged reading exactly once, "
        "in queue order by id (0 lost, 0 duplicates)" % (len(returned["esp32-demo"]), rows))
    subprocess.run(["rm", "-rf", work])
    return 0


if __name__ == "__main__":
    sys.exit(main())
