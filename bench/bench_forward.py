"""Store and forward at fleet scale: end-to-end messages/s and latency, as ratios to plain
paho publish -> subscribe measured in the same run on the same broker setup.

    python3 bench/bench_forward.py [--devices 50] [--ingesters 3] [--messages 200] [--batch 32] [--boards 2] [--quick]

Each part starts its own mosquitto (Debian's) on a free loopback port.
- baseline: D publisher processes (paho, QoS 1, one message per publish, no queue, no
  disk) -> I subscriber processes on an MQTT 5 shared subscription that only count;
- forward: D device processes (MiniQueue with sync="always" in /dev/shm, so the device's
  flash is not what is measured + miniforward + PahoTransport, batch B, window W) -> I
  `mini ingest` processes on one SQLite file on the real disk (WAL, synchronous=FULL),
  with --boards virtual boards (the MicroPython unix port, LittleFS, umqtt.simple) logging
  and forwarding alongside (counted apart: their clock is not the host's); again with
  batch 1; and both paced at --paced-rate msg/s in total, for latency at a load below
  saturation;
- dedup: the ingester's INSERT OR IGNORE into the keyed table against a plain INSERT into
  the same table without the UNIQUE key (in process, same disk).
Every process waits at a start barrier after it has connected; messages/s is all messages
over (last arrival - start); latency is from the put (or publish) to the commit (or the
subscriber's callback), on one host clock.
"""
import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path[:0] = [TOP + "/shared", TOP + "/cpython", TOP + "/tests/forward", HERE]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([TOP + "/shared", TOP + "/cpython"]))


def record(i):
    return {"t": 0.0, "sensor": "temp-%02d" % (i % 16), "value": 21.5 + (i % 100) / 10, "n": i}


def wait_start(path):
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while not os.path.exists(path):
        time.sleep(0.002)


# ------------------------------------------------------------------ workers (run as subprocesses)

def pace(t0, i, every, step=None):
    """Wait until message i is due (t0 + i * every), running step() meanwhile."""
    due = t0 + i * every
    while True:
        now = time.time()
        if now >= due:
            return
        if step is None or not step():
            # a device loop that pumps every 10 ms at most when nothing happens (50 processes
            # polling faster would eat the 2 cores the broker and the ingesters need)
            time.sleep(min(0.01 if step else 0.002, due - now))


def worker_pub(port, name, count, start, every):
    import paho.mqtt.client as mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", port)
    c.loop_start()
    wait_start(start)
    infos = []
    t0 = time.time()
    for i in range(count):
        pace(t0, i, every)
        body = record(i)
        body["t"] = time.time()
        infos.append(c.publish("bench/%s/up" % name, json.dumps(body), qos=1))
    for info in infos:
        info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def worker_sub(port, out):
    import paho.mqtt.client as mqtt
    lat = []
    state = {"last": 0.0}

    def on_message(c, u, msg):
        now = time.time()
        lat.append(now - json.loads(msg.payload)["t"])
        state["last"] = now

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.on_connect = lambda c, u, f, rc, p: c.subscribe("$share/base/bench/+/up", qos=1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while not stop:
        with open(out + ".tmp", "w") as f:
            f.write("%d %f" % (len(lat), state["last"]))
        os.replace(out + ".tmp", out)
        time.sleep(0.1)
    c.loop_stop()
    with open(out + ".tmp", "w") as f:
        json.dump({"count": len(lat), "last": state["last"], "lat": lat}, f)
    os.replace(out + ".tmp", out)


def worker_device(port, name, count, batch, queue_dir, start, every, window):
    from miniqueue import MiniQueue
    from miniforward import Forwarder
    from minitools.forward_paho import PahoTransport
    q = MiniQueue.open(queue_dir, max_bytes=8 << 20)
    fw = Forwarder(q, PahoTransport("127.0.0.1", port, client_id=name), name, batch=batch, window=window,
                   resend_ms=10000)
    while not fw.connected:
        fw.pump()
        time.sleep(0.01)
    wait_start(start)
    t0 = time.time()
    for i in range(count):
        pace(t0, i, every, fw.pump)
        body = record(i)
        body["t"] = time.time()
        q.put(body)
        fw.pump()
    fw.flush(300000, step_ms=1)
    fw.close()
    q.close()


# ------------------------------------------------------------------ the parts

def spawn(*args):
    return subprocess.Popen([sys.executable, os.path.abspath(__file__)] + [str(a) for a in args],
                            stdout=subprocess.PIPE, env=ENV, text=True)


def wait_ready(procs):
    for p in procs:
        line = p.stdout.readline()
        if "ready" not in line:
            raise RuntimeError("a worker did not start: %r" % line)


BOARD = os.path.join(TOP, "boards", "virtual", "board.py")


def sh(*cmd):
    out = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=TOP, env=ENV,
                         timeout=300)
    if out.returncode:
        raise RuntimeError("%s: %s" % (cmd, out.stdout.decode("utf-8", "replace")))
    return out.stdout.decode("utf-8", "replace")


def prepare_boards(work, tag, count, port, messages):
    """Virtual boards (the unix port, LittleFS) with umqtt.simple + miniforward (mpremote mip) and
    tests/forward/board_app.py as main.py, switched off: [image]. [] without the tarball."""
    import mqttkit
    package = mqttkit.umqtt_package(os.path.join(work, "mip"))
    if package is None or not count:
        return []
    with open(os.path.join(TOP, "tests", "forward", "board_app.py")) as f:
        app = f.read()
    images = []
    for i in range(count):
        image = os.path.join(work, "board-%s-%d.bin" % (tag, i))
        main = os.path.join(work, "main-%s-%d.py" % (tag, i))
        with open(main, "w") as f:
            f.write(app.replace("PORT = 0", "PORT = %d" % port).replace('DEVICE = "board"', 'DEVICE = "vb%d"' % i)
                    .replace("COUNT = 0", "COUNT = %d" % messages).replace("time.sleep_ms(5)", "time.sleep_ms(1)"))
        address = sh(sys.executable, BOARD, "start", "--image", image, "--board", "esp32").strip()
        mp = [sys.executable, "-m", "mpremote", "connect", address, "resume"]
        sh(*(mp + ["mip", "install", "--target", "/lib", package, "+", "mip", "install", "--target", "/lib",
                   os.path.join(TOP, "micropython", "miniforward", "package.json"), "+", "fs", "cp", main, ":main.py"]))
        sh(sys.executable, BOARD, "stop", "--image", image, "--power-cut")
        images.append(image)
    return images


def finish_boards(images, timeout=300):
    """Wait for each board's "idle:" line; stop them; [(final line or None)]."""
    import re
    lines = []
    deadline = time.time() + timeout
    for image in images:
        found = None
        while time.time() < deadline:
            try:
                with open(image + ".console.log", "rb") as f:
                    found = re.search(r"\n((not )?idle:[^\r\n]*)", f.read().decode("utf-8", "replace"))
            except OSError:
                found = None
            if found:
                break
            time.sleep(0.2)
        lines.append(found.group(1) if found else None)
        subprocess.run([sys.executable, BOARD, "stop", "--image", image, "--power-cut"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return lines


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100.0 * len(values)))]


def run_baseline(work, args, every=0.0):
    import mqttkit
    tag = "base-%g" % every
    broker = mqttkit.Broker(os.path.join(work, "broker-" + tag))
    start = os.path.join(work, "start-" + tag)
    outs = [os.path.join(work, "sub%d-%s.json" % (i, tag)) for i in range(args.ingesters)]
    subs = [spawn("_sub", broker.port, out) for out in outs]
    wait_ready(subs)
    pubs = [spawn("_pub", broker.port, "d%03d" % i, args.messages, start, every) for i in range(args.devices)]
    wait_ready(pubs)
    t0 = time.time()
    open(start, "w").close()
    total = args.devices * args.messages
    deadline = time.time() + 600
    while time.time() < deadline:
        got = 0
        for out in outs:
            try:
                with open(out) as f:
                    got += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        if got >= total:
            break
        time.sleep(0.05)
    for p in pubs:
        p.wait()
    for p in subs:
        p.send_signal(signal.SIGTERM)
    for p in subs:
        p.wait()
    broker.stop()
    lat, last, count = [], 0.0, 0
    for out in outs:
        with open(out) as f:
            result = json.load(f)
        lat += result["lat"]
        last = max(last, result["last"])
        count += result["count"]
    return {"messages": count, "rate": count / (last - t0), "p50": percentile(lat, 50), "p99": percentile(lat, 99)}


def run_forward(work, args, batch, every=0.0, boards=False):
    import mqttkit
    tag = "b%d-%g" % (batch, every)
    broker = mqttkit.Broker(os.path.join(work, "broker-" + tag))
    db = os.path.join(work, "readings-%s.db" % tag)
    ingesters = [mqttkit.ingester(db, broker.port) for _ in range(args.ingesters)]
    start = os.path.join(work, "start-" + tag)
    shm = tempfile.mkdtemp(prefix="mini-bench-forward-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    boards = prepare_boards(work, tag, args.boards if boards else 0, broker.port, args.board_messages)
    devices = [spawn("_device", broker.port, "d%03d" % i, args.messages, batch, os.path.join(shm, "q%d" % i), start,
                     every, args.window) for i in range(args.devices)]
    wait_ready(devices)
    for image in boards:  # they boot and start logging with the CPython devices
        sh(sys.executable, BOARD, "start", "--image", image)
    t0 = time.time()
    open(start, "w").close()
    for p in devices:
        p.wait()
    board_lines = finish_boards(boards)
    for p in ingesters:
        mqttkit.stop(p)
    broker.stop()
    subprocess.run(["rm", "-rf", shm])
    con = sqlite3.connect(db)
    count, last = con.execute("SELECT COUNT(*), MAX(received_at) FROM messages WHERE device LIKE 'd%'").fetchone()
    lat = [r[0] for r in con.execute("SELECT received_at - json_extract(payload, '$.t') FROM messages "
                                     "WHERE device LIKE 'd%'")]
    board_rows = con.execute("SELECT COUNT(*), COUNT(DISTINCT json_extract(payload, '$.n') || device) "
                             "FROM messages WHERE device LIKE 'vb%'").fetchone()
    dups = con.execute("SELECT SUM(duplicates) FROM incarnations").fetchone()[0]
    con.close()
    return {"messages": count, "rate": count / (last - t0), "p50": percentile(lat, 50), "p99": percentile(lat, 99),
            "duplicates": dups, "boards": len(boards), "board_rows": board_rows, "board_lines": board_lines}


def run_dedup(work, rows=5000, batch=256, rounds=7):
    """Rows per second into the keyed table (INSERT OR IGNORE), into the same table without
    the UNIQUE key (plain INSERT), and of INSERT OR IGNORE when every row is already there
    (the resend case): medians over interleaved rounds, each kind on its own database."""
    from minitools.ingest import open_db
    import statistics
    payload = json.dumps(record(1))
    kinds = ("plain", "keyed", "keyed-duplicates")
    dbs, sqls, rates = {}, {}, dict((k, []) for k in kinds)
    for kind in kinds:
        dbs[kind] = open_db(os.path.join(work, "dedup-%s.db" % kind))
        if kind == "plain":
            dbs[kind].execute("CREATE TABLE plain(device TEXT, incarnation TEXT, id INTEGER, received_at REAL, "
                              "payload TEXT)")
            sqls[kind] = "INSERT INTO plain VALUES (?,?,?,?,?)"
        else:
            sqls[kind] = ("INSERT OR IGNORE INTO messages (device, incarnation, id, received_at, payload) "
                          "VALUES (?,?,?,?,?)")
    dbs["keyed-duplicates"].executemany(sqls["keyed"], [("d%03d" % (i % 50), "inc", i, 0.0, payload)
                                                        for i in range(rows * rounds)])
    for r in range(rounds):
        order = kinds[r % 3:] + kinds[:r % 3]
        for kind in order:
            db, sql = dbs[kind], sqls[kind]
            t = time.perf_counter()
            for s in range(r * rows, (r + 1) * rows, batch):
                db.execute("BEGIN IMMEDIATE")
                db.executemany(sql, [("d%03d" % (i % 50), "inc", i, time.time(), payload) for i in range(s, s + batch)])
                db.execute("COMMIT")
            rates[kind].append(rows / (time.perf_counter() - t))
    for db in dbs.values():
        db.close()
    return dict((k, statistics.median(rates[k])) for k in kinds)


def main(argv):
    if argv[:1] == ["_pub"]:
        return worker_pub(int(argv[1]), argv[2], int(argv[3]), argv[4], float(argv[5]))
    if argv[:1] == ["_sub"]:
        return worker_sub(int(argv[1]), argv[2])
    if argv[:1] == ["_device"]:
        return worker_device(int(argv[1]), argv[2], int(argv[3]), int(argv[4]), argv[5], argv[6], float(argv[7]),
                             int(argv[8]))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=50)
    p.add_argument("--ingesters", type=int, default=3)
    p.add_argument("--messages", type=int, default=200, help="per device")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--window", type=int, default=16, help="the Forwarder's window (publishes awaiting acks)")
    p.add_argument("--boards", type=int, default=2, help="virtual boards in the flat-out batched run")
    p.add_argument("--board-messages", type=int, default=300)
    p.add_argument("--paced-rate", type=int, default=1000, help="msg/s offered in total in the paced runs")
    p.add_argument("--quick", action="store_true", help="10 devices x 50 messages")
    args = p.parse_args(argv)
    if args.quick:
        args.devices, args.messages, args.boards, args.board_messages = 10, 50, 1, 30
    work = tempfile.mkdtemp(prefix="mini-bench-forward-")
    print("store and forward: %d devices x %d messages, %d ingesters, one mosquitto; load average %.1f" % (
        args.devices, args.messages, args.ingesters, os.getloadavg()[0]))
    base = run_baseline(work, args)
    fwd = run_forward(work, args, args.batch, boards=True)
    one = run_forward(work, args, 1)
    every = args.devices / float(args.paced_rate)
    base_paced = run_baseline(work, args, every)
    fwd_paced = run_forward(work, args, args.batch, every)
    dedup = run_dedup(work)
    subprocess.run(["rm", "-rf", work])
    print("%-52s %9s %9s %9s %9s %10s" % ("", "msg/s", "p50 ms", "p99 ms", "x base/s", "x base p50"))

    def table(title, base, rows):
        print(title)
        for name, r in [("baseline: paho QoS 1 publish -> subscribe", base)] + rows:
            print("  %-50s %9.0f %9.1f %9.1f %9.2f %10.2f" % (name, r["rate"], r["p50"] * 1000, r["p99"] * 1000,
                                                            r["rate"] / base["rate"], r["p50"] / base["p50"]))
    table("flat out (every device puts as fast as it can):", base,
          [("miniforward batch %d -> mini ingest" % args.batch, fwd), ("miniforward batch 1 -> mini ingest", one)])
    table("paced: %d msg/s offered in total (%.0f per device):" % (args.paced_rate, 1 / every), base_paced,
          [("miniforward batch %d -> mini ingest" % args.batch, fwd_paced)])
    runs = (base, fwd, one, base_paced, fwd_paced)
    for name, r in (("forward batch %d" % args.batch, fwd), ("forward batch 1", one),
                    ("forward paced", fwd_paced)):
        print("%s: %d messages stored, %d duplicates dropped by the key" % (name, r["messages"], r["duplicates"] or 0))
    if fwd["boards"]:
        print("forward batch %d also had %d virtual boards (umqtt.simple, batch 4) logging %d readings each: "
              "%d rows stored, %d distinct readings; boards: %s" % (
                  args.batch, fwd["boards"], args.board_messages, fwd["board_rows"][0], fwd["board_rows"][1],
                  fwd["board_lines"]))
    else:
        print("no virtual boards (--boards 0, or no MicroPython source tarball for umqtt.simple)")
    print("dedup (SQLite, WAL, synchronous=FULL, 256 rows per commit, medians of 7 rounds): plain INSERT %.0f rows/s, "
          "INSERT OR IGNORE keyed %.0f rows/s (%.2fx), all duplicates %.0f rows/s (%.2fx)" % (
              dedup["plain"], dedup["keyed"], dedup["keyed"] / dedup["plain"], dedup["keyed-duplicates"],
              dedup["keyed-duplicates"] / dedup["plain"]))
    expected = args.devices * args.messages
    ok = all(r["messages"] == expected for r in runs)
    if fwd["boards"]:
        ok = ok and fwd["board_rows"][0] == fwd["board_rows"][1] == fwd["boards"] * args.board_messages
    if not ok:
        print("MISSING MESSAGES: expected %d each, got %s" % (expected, [r["messages"] for r in runs]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
