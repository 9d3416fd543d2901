# Store and forward end to end with real parts: mosquitto (Debian), paho-mqtt, the
# miniforward brick in CPython device processes, and `mini ingest` processes.
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "forward"))
import mqttkit  # noqa: E402

DEVICE = os.path.join(mqttkit.TOP, "tests", "forward", "device_proc.py")


def device(tmp_path, name, port, count, *extra, run=0, queue=None):
    return subprocess.Popen([sys.executable, DEVICE, "--queue", str(queue or tmp_path / ("q-" + name)),
                             "--device", name, "--port", str(port), "--count", str(count), "--run", str(run)]
                            + [str(e) for e in extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, returned, name, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    mqttkit.read_puts(out, returned, name)
    assert proc.returncode == 0, (out[-2000:], err[-2000:])
    return out.splitlines()[-1]


def mini(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([mqttkit.TOP + "/shared", mqttkit.TOP + "/cpython"]))
    return subprocess.run([sys.executable, "-m", "minitools.cli"] + [str(a) for a in args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)


def test_two_devices_two_ingesters_exactly_once_with_batching(tmp_path):
    broker = mqttkit.Broker(tmp_path / "broker")
    db = tmp_path / "readings.db"
    ingesters = [mqttkit.ingester(db, broker.port) for _ in range(2)]
    try:
        returned = {}
        devs = {"dev1": device(tmp_path, "dev1", broker.port, 300, "--batch", 16),
                "dev2": device(tmp_path, "dev2", broker.port, 200, "--batch", 1)}
        for name in devs:
            assert "idle True" in finish(devs[name], returned, name)
        assert mqttkit.check_exactly_once(db, returned) == 500
    finally:
        outs = [mqttkit.stop(p)[1].decode() for p in ingesters]
        broker.stop()
    stored = [int(o.split("stored ")[1].split(",")[0]) for o in outs]
    assert sum(stored) == 500 and all(stored), outs  # both ingesters took a share
    stats = mini("ingest", "--db", db, "--stats", "--json")
    assert stats.returncode == 0, stats.stderr
    devices = {d["device"]: d for d in json.loads(stats.stdout)["devices"]}
    assert devices["dev1"]["messages"] == 300 and devices["dev2"]["messages"] == 200
    assert devices["dev1"]["backlog"] == 0 and devices["dev1"]["incarnations"] == 1
    text = mini("ingest", "--db", db, "--stats")
    assert text.returncode == 0 and "dev1" in text.stdout and "silent_s" in text.stdout


def test_puts_while_the_broker_is_down_then_forwarded_and_a_reflash_is_a_new_incarnation(tmp_path):
    port = mqttkit.free_port()
    returned = {}
    dev = device(tmp_path, "dev1", port, 100, "--timeout", 60)   # nothing listens yet
    time.sleep(1.0)
    broker = mqttkit.Broker(tmp_path / "broker", port=port)
    db = tmp_path / "readings.db"
    ing = mqttkit.ingester(db, broker.port)
    try:
        assert "idle True" in finish(dev, returned, "dev1")
        # a reflash: the queue directory is made anew, its ids restart at 1
        import shutil
        shutil.rmtree(str(tmp_path / "q-dev1"))
        assert "idle True" in finish(device(tmp_path, "dev1", port, 50, run=1), returned, "dev1")
        assert mqttkit.check_exactly_once(db, returned) == 150
    finally:
        mqttkit.stop(ing)
        broker.stop()
    con = sqlite3.connect(str(db))
    incs = con.execute("SELECT incarnation, COUNT(*), MIN(id) FROM messages GROUP BY incarnation").fetchall()
    assert sorted(n for _, n, _ in incs) == [50, 100] and all(first == 1 for _, _, first in incs)


def test_bad_input_is_rejected_counted_and_blocks_nobody(tmp_path):
    import paho.mqtt.client as mqtt
    broker = mqttkit.Broker(tmp_path / "broker")
    db = tmp_path / "readings.db"
    ing = mqttkit.ingester(db, broker.port, "--max-payload", 4096)
    try:
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        good = {"v": 1, "d": "evil", "i": "abc", "n": 0, "m": [[1, {"x": 1}]]}
        bad = [
            ("mini/evil/up", b"\xff\xfe not json"),
            ("mini/evil/up", b'{"v": 1, "d": "evil", "i": "abc", "n": 0, "m": [[1, NaN]]}'),
            ("mini/evil/up", json.dumps({"v": 1, "d": "evil"}).encode()),
            ("mini/evil/up", json.dumps(dict(good, m=[[2, 1], [1, 2]])).encode()),
            ("mini/evil/up", json.dumps(dict(good, m=[[True, 1]])).encode()),
            ("mini/evil/up", json.dumps(dict(good, m=[[1, "x" * 5000]])).encode()),
            ("mini/other/up", json.dumps(good).encode()),       # device id in topic != identity
            ("mini/evil/up", b"[" * 100000 + b"]" * 100000),     # huge, and deep
            ("mini/evil/up", b"[" * 2000 + b"]" * 2000),          # deep: RecursionError
            # each of these killed every ingester (an exception out of the transaction)
            ("mini/evil/up", json.dumps(dict(good, m=[[2 ** 70, 1]])).encode()),   # over SQLite's INTEGER
            ("mini/evil/up", json.dumps(dict(good, n=2 ** 63)).encode()),
            ("mini/evil/up", json.dumps(dict(good, m=[[1, "\ud800"]])).encode()),  # a lone surrogate
            ("mini/evil/up", json.dumps(dict(good, i="\udc00x")).encode()),
            ("mini/evil/up", json.dumps(dict(good, m=[[1, {"t": 1}]])).encode().replace(b'"t": 1', b'"t": 1e400')),
        ]
        for topic, payload in bad * 2:
            pub.publish(topic, payload, qos=1).wait_for_publish(5)
        returned = {}
        assert "idle True" in finish(device(tmp_path, "dev1", broker.port, 20), returned, "dev1")
        assert mqttkit.check_exactly_once(db, returned) == 20
        pub.loop_stop()
    finally:
        out, err = mqttkit.stop(ing)
        broker.stop()
    assert b"rejected 28" in err, err
    con = sqlite3.connect(str(db))
    rejected = con.execute("SELECT reason, times FROM rejected ORDER BY first_at").fetchall()
    assert len(rejected) == 14 and all(times == 2 for _, times in rejected), rejected
    reasons = " | ".join(r for r, _ in rejected)
    for word in ("not JSON", "shape", "huge", "'evil' in the payload is not 'other'"):
        assert word in reasons, reasons
    assert con.execute("SELECT COUNT(*) FROM messages WHERE device != 'dev1'").fetchone()[0] == 0


def test_through_a_mosquitto_bridge_edge_to_central(tmp_path):
    central = mqttkit.Broker(tmp_path / "central")
    edge = mqttkit.Broker(tmp_path / "edge", extra=(
        "connection central\naddress 127.0.0.1:%d\ncleansession true\nrestart_timeout 1\n"
        "topic mini/+/up out 1\ntopic mini/+/ack in 1\n" % central.port))
    db = tmp_path / "readings.db"
    ing = mqttkit.ingester(db, central.port)
    try:
        returned = {}
        procs = {"dev1": device(tmp_path, "dev1", edge.port, 150, "--batch", 8, "--resend-ms", 500),
                 "dev2": device(tmp_path, "dev2", edge.port, 150, "--resend-ms", 500)}
        time.sleep(0.5)
        central.kill()   # the bridge goes down mid-stream, and comes back
        time.sleep(0.5)
        central.start()
        for name in procs:
            assert "idle True" in finish(procs[name], returned, name)
        assert mqttkit.check_exactly_once(db, returned) == 300
    finally:
        mqttkit.stop(ing)
        edge.stop()
        central.stop()


@pytest.mark.parametrize("made_by_someone", [
    ["CREATE TABLE t(x)"],
    # a meta(key, value) of its own: adopted (our tables and schema row added) before
    ["CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)", "CREATE TABLE users(name)"],
    ["CREATE TABLE meta(key, value, other)"],
    ["PRAGMA user_version=7"],                                   # nothing in it but a setting
    ["CREATE VIEW v AS SELECT 1"],
    [],                                                           # an empty file: --stats only
])
def test_ingest_refuses_a_database_it_did_not_make(tmp_path, made_by_someone):
    # --stats switched such databases to WAL (and made an empty file a database) before
    # it refused them
    import hashlib
    other = tmp_path / "other.db"
    other.write_bytes(b"")
    if made_by_someone:
        con = sqlite3.connect(str(other))
        for statement in made_by_someone:
            con.execute(statement)
        con.commit()
        con.close()
    before = hashlib.sha256(other.read_bytes()).hexdigest()
    for args in (["--stats"], ["--broker", "127.0.0.1:1"]) if made_by_someone else (["--stats"],):
        proc = mini("ingest", "--db", other, *args)
        assert proc.returncode == 2 and "not a mini ingest database" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert hashlib.sha256(other.read_bytes()).hexdigest() == before
    assert not os.path.exists(str(other) + "-wal")
    missing = mini("ingest", "--db", tmp_path / "none.db", "--stats")
    assert missing.returncode == 2 and "no such database" in missing.stderr


def test_ingest_says_when_the_broker_cannot_be_reached_and_when_it_is_back(tmp_path):
    # it waited in silence for a broker that was not there
    import threading
    port = mqttkit.free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([mqttkit.TOP + "/shared", mqttkit.TOP + "/cpython"]))
    proc = subprocess.Popen([sys.executable, "-m", "minitools.cli", "ingest", "--db", str(tmp_path / "r.db"),
                             "--broker", "127.0.0.1:%d" % port], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    said = []
    reader = threading.Thread(target=lambda: said.extend(iter(proc.stderr.readline, b"")), daemon=True)
    reader.start()
    broker = None
    try:
        deadline = time.monotonic() + 20
        while b"cannot reach the broker" not in b"".join(said) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b"cannot reach the broker at 127.0.0.1:%d" % port in b"".join(said), said
        broker = mqttkit.Broker(tmp_path / "broker", port=port)
        while b"the broker is back" not in b"".join(said) and time.monotonic() < deadline + 20:
            time.sleep(0.05)
        assert b"the broker is back" in b"".join(said), said
    finally:
        mqttkit.stop(proc)
        reader.join(timeout=5)
        if broker is not None:
            broker.stop()
    assert b"".join(said).count(b"cannot reach") == 1  # once per outage, not per retry
