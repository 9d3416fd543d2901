# Store and forward with a locked-down broker: mosquitto with a password file and an
# ACL (a device publishes only to its own up topic and reads only its own acks; the
# ingester reads every up topic and writes acks), and TLS on loopback with a
# certificate authority made in the test (openssl from Debian).
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "forward"))
import mqttkit  # noqa: E402
from test_forward import device, finish, mini  # noqa: E402

ACL = """user ingest
topic read mini/+/up
topic write mini/+/ack

pattern write mini/%u/up
pattern read mini/%u/ack
"""
USERS = {"ingest": "ingest-secret", "dev1": "dev1-secret", "dev2": "dev2-secret"}


def locked_broker(tmp_path, listener_extra=""):
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    mqttkit.ensure_mosquitto()
    path = str(tmp_path / "passwd")
    for i, user in enumerate(sorted(USERS)):
        subprocess.check_call([passwd] + (["-c"] if i == 0 else []) + ["-b", path, user, USERS[user]],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(str(tmp_path / "acl"), "w") as f:
        f.write(ACL)
    extra = "allow_anonymous false\npassword_file %s\nacl_file %s\n" % (path, tmp_path / "acl")
    return mqttkit.Broker(tmp_path / "broker", extra=extra, listener_extra=listener_extra)


def creds(user, password=None):
    return ["--username", user, "--password", password or USERS[user]]


def test_wrong_credentials_are_refused(tmp_path):
    broker = locked_broker(tmp_path)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "minitools.cli", "ingest", "--db", str(tmp_path / "r.db"),
                                 "--broker", "127.0.0.1:%d" % broker.port] + creds("ingest", "wrong"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=mqttkit.TOP + "/shared:" + mqttkit.TOP + "/cpython"))
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 2 and "refused" in err, (out, err)
        dev = device(tmp_path, "dev1", broker.port, 3, "--timeout", 3, *creds("dev1", "wrong"))
        out, err = dev.communicate(timeout=60)
        assert dev.returncode == 1 and "idle False" in out and "confirmed=0" in out and "refused" in out, out
        anonymous = device(tmp_path, "dev2", broker.port, 3, "--timeout", 3)
        out, err = anonymous.communicate(timeout=60)
        assert anonymous.returncode == 1 and "connects=0" in out, out
    finally:
        broker.stop()


def test_a_device_cannot_write_as_another_or_read_its_acks(tmp_path):
    import paho.mqtt.client as mqtt
    broker = locked_broker(tmp_path)
    db = tmp_path / "r.db"
    ing = mqttkit.ingester(db, broker.port, *creds("ingest"))
    try:
        returned = {}
        assert "idle True" in finish(device(tmp_path, "dev2", broker.port, 10, *creds("dev2")), returned, "dev2")
        # dev1, with its own credentials, tries to pass as dev2, and to listen to dev2's acks
        spy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev1")
        spy.username_pw_set("dev1", USERS["dev1"])
        heard = []
        spy.on_message = lambda c, u, msg: heard.append(msg.topic)
        spy.connect("127.0.0.1", broker.port)
        spy.loop_start()
        spy.subscribe("mini/dev2/ack", qos=1)
        spy.subscribe("mini/+/ack", qos=1)
        forged = {"v": 1, "d": "dev2", "i": "forged", "n": 0, "m": [[1, {"n": 999, "r": 9}]]}
        spy.publish("mini/dev2/up", json.dumps(forged), qos=1).wait_for_publish(5)   # the ACL drops it
        spy.publish("mini/dev1/up", json.dumps(forged), qos=1).wait_for_publish(5)   # the ingester rejects it
        assert "idle True" in finish(device(tmp_path, "dev2", broker.port, 10, *creds("dev2"), run=1),
                                     returned, "dev2")
        time.sleep(0.5)
        spy.loop_stop()
        assert heard == [], heard
    finally:
        mqttkit.stop(ing)
        broker.stop()
    assert mqttkit.check_exactly_once(db, returned) == 20
    con = sqlite3.connect(str(db))
    assert con.execute("SELECT COUNT(*) FROM messages WHERE incarnation='forged'").fetchone()[0] == 0
    reasons = [r for r, in con.execute("SELECT reason FROM rejected")]
    assert len(reasons) == 1 and "'dev2' in the payload is not 'dev1'" in reasons[0], reasons


def make_certificates(directory):
    """A CA, and a server certificate for 127.0.0.1 signed by it (openssl)."""
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("openssl is not installed")
    d = str(directory)

    def run(*args):
        subprocess.check_call([openssl] + list(args), cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=mini test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    run("x509", "-in", "ca.crt", "-outform", "DER", "-out", "ca.der")  # MicroPython's ssl takes DER cadata
    return dict((name, os.path.join(d, name)) for name in ("ca.crt", "ca.der", "server.crt", "server.key"))


def test_tls_on_loopback_with_a_certificate_made_here(tmp_path):
    os.makedirs(str(tmp_path / "pki"))
    pki = make_certificates(tmp_path / "pki")
    broker = locked_broker(tmp_path, listener_extra="cafile %s\ncertfile %s\nkeyfile %s\n" % (
        pki["ca.crt"], pki["server.crt"], pki["server.key"]))
    db = tmp_path / "r.db"
    ing = mqttkit.ingester(db, broker.port, *creds("ingest"), "--tls-ca", pki["ca.crt"])
    try:
        returned = {}
        assert "idle True" in finish(device(tmp_path, "dev1", broker.port, 40, "--batch", 8, *creds("dev1"),
                                            "--tls-ca", pki["ca.crt"]), returned, "dev1")
        assert mqttkit.check_exactly_once(db, returned) == 40
        # plain MQTT on the TLS port gets nowhere
        plain = device(tmp_path, "dev2", broker.port, 2, "--timeout", 3, *creds("dev2"))
        out, _ = plain.communicate(timeout=60)
        assert plain.returncode == 1 and "connects=0" in out, out
    finally:
        mqttkit.stop(ing)
        broker.stop()


MP_DEVICE = """
import sys
sys.path[:0] = [%(shared)r, %(umqtt)r]
import ssl
from miniqueue import MiniQueue
from miniforward import Forwarder, UmqttTransport
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = ssl.CERT_REQUIRED
with open(%(ca)r, "rb") as f:
    ctx.load_verify_locations(cadata=f.read())
q = MiniQueue.open(%(queue)r)
fw = Forwarder(q, UmqttTransport("127.0.0.1", %(port)d, client_id="dev1", user="dev1", password=%(password)r,
                                 ssl=ctx, timeout=5), "dev1", batch=4, retry_ms=100, max_retry_ms=500)
for n in range(%(count)d):
    print("put %%d 0 %%d" %% (q.put({"n": n}), n))
print("idle" if fw.flush(%(flush_ms)d) else "not idle", fw.confirmed, fw.connects, fw.failures, repr(fw.last_error))
"""


def test_tls_and_credentials_from_micropython_with_umqtt(tmp_path):
    """The device brick on the MicroPython unix port: umqtt.simple with the port's ssl
    (mbedtls), verifying the broker against the test's CA, with a user name and password."""
    micropython = os.path.join(os.path.dirname(sys.executable), "micropython")
    package = mqttkit.umqtt_package(str(tmp_path / "umqtt"))
    if package is None:
        pytest.skip("no MicroPython source tarball with micropython-lib in ../shared/micropython")
    os.makedirs(str(tmp_path / "pki"))
    pki = make_certificates(tmp_path / "pki")
    broker = locked_broker(tmp_path, listener_extra="cafile %s\ncertfile %s\nkeyfile %s\n" % (
        pki["ca.crt"], pki["server.crt"], pki["server.key"]))
    db = tmp_path / "r.db"
    ing = mqttkit.ingester(db, broker.port, *creds("ingest"), "--tls-ca", pki["ca.crt"])
    try:
        script = MP_DEVICE % {"shared": os.path.join(mqttkit.TOP, "shared"), "umqtt": str(tmp_path / "umqtt"),
                              "ca": pki["ca.der"], "queue": str(tmp_path / "mpq"), "port": broker.port,
                              "password": USERS["dev1"], "count": 30, "flush_ms": 30000}
        proc = subprocess.run([micropython, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=120)
        assert proc.returncode == 0 and "\nidle 30 1 0" in proc.stdout, proc.stdout[-3000:]
        returned = {}
        mqttkit.read_puts(proc.stdout, returned, "dev1")
        assert mqttkit.check_exactly_once(db, returned) == 30
        # a broker whose certificate another CA signed is refused
        os.makedirs(str(tmp_path / "other"))
        subprocess.check_call(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "o.key",
                               "-out", "o.crt", "-days", "2", "-subj", "/CN=other CA", "-outform", "DER"],
                              cwd=str(tmp_path / "other"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        script = MP_DEVICE % {"shared": os.path.join(mqttkit.TOP, "shared"), "umqtt": str(tmp_path / "umqtt"),
                              "ca": str(tmp_path / "other" / "o.crt"), "queue": str(tmp_path / "mpq2"),
                              "port": broker.port, "password": USERS["dev1"], "count": 2, "flush_ms": 1500}
        proc = subprocess.run([micropython, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=120)
        assert proc.returncode == 0 and "\nnot idle 0 0 " in proc.stdout, proc.stdout[-3000:]
    finally:
        mqttkit.stop(ing)
        broker.stop()
