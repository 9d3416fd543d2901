"""mini ingest: the host end of miniforward. Stores every message a device forwards
into SQLite exactly once, then tells the device it may drop it.

    mini ingest --broker 127.0.0.1:1883 --db readings.db [--group NAME]
    mini ingest --db readings.db --stats [--json]

It subscribes (paho-mqtt, MQTT 5, QoS 1) to the shared subscription
$share/GROUP/PREFIX/+/up, so several ingesters split the devices' traffic and any of
them may die. For each batch of messages it received: INSERT OR IGNORE keyed on
(device, incarnation, id) in one transaction of a WAL database with
synchronous=FULL, COMMIT, and only then the ack {"i": incarnation, "ids": [...]}
on PREFIX/DEVICE/ack (and the MQTT PUBACK). A crash anywhere loses nothing: what
was not acked is sent again by the device, and the key drops what was stored twice.

Input that is not a message (not UTF-8 JSON, the wrong shape, over --max-payload,
or a device id in the payload that is not the one in the topic) is never stored as
one and never acked: it goes to the `rejected` table (one row per topic and payload,
counted), and the ingester goes on. Tables: FORMAT.md section 7.3.
"""
import argparse
import hashlib
import json
import os
import queue
import signal
import sqlite3
import sys
import time

from miniforward import WIRE_VERSION, check_device

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS messages(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL, incarnation TEXT NOT NULL, id INTEGER NOT NULL,
    received_at REAL NOT NULL, payload TEXT NOT NULL,
    UNIQUE (device, incarnation, id));
CREATE TABLE IF NOT EXISTS incarnations(
    device TEXT NOT NULL, incarnation TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    last_id INTEGER NOT NULL, backlog INTEGER NOT NULL, duplicates INTEGER NOT NULL,
    PRIMARY KEY (device, incarnation)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejected(
    topic TEXT NOT NULL, digest TEXT NOT NULL, reason TEXT NOT NULL, size INTEGER NOT NULL,
    head BLOB NOT NULL, first_at REAL NOT NULL, last_at REAL NOT NULL, times INTEGER NOT NULL,
    PRIMARY KEY (topic, digest));
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS conflicts(
    device TEXT NOT NULL, incarnation TEXT NOT NULL, id INTEGER NOT NULL, digest TEXT NOT NULL,
    received_at REAL NOT NULL, payload TEXT NOT NULL, times INTEGER NOT NULL,
    PRIMARY KEY (device, incarnation, id, digest)) WITHOUT ROWID;
"""
MAX_ID = (1 << 63) - 1  # SQLite's INTEGER: an id or backlog over it cannot be stored
REJECTED_HEAD = 1024    # bytes of a rejected payload kept


class IngestError(Exception):
    """One line on stderr, exit 2."""


class Rejected(Exception):
    """A payload that is not a message; str() is the reason stored in `rejected`."""


def open_db(path, create=True):
    """The ingest database at `path`. create=False (--stats): read-only, and it must exist.

    A database we did not make is never changed, not even switched to WAL: before any
    change, one that holds anything (a table, a view, a user_version) must hold our
    `meta` table with our schema; only a new or empty file becomes ours."""
    if not create and not os.path.exists(path):
        raise IngestError("%s: no such database" % path)
    probe = sqlite3.connect("file:%s?mode=ro" % _uri_path(path), uri=True) if os.path.exists(path) else None
    if probe is not None:
        try:
            ours = _check_ours(path, probe)
        except sqlite3.DatabaseError as exc:
            raise IngestError("%s: not a SQLite database (%s); refusing to change it" % (path, exc))
        finally:
            probe.close()
        if not ours and not create:
            raise IngestError("%s: not a mini ingest database of schema %d" % (path, SCHEMA_VERSION))
    if not create:
        return sqlite3.connect("file:%s?mode=ro" % _uri_path(path), uri=True, isolation_level=None, timeout=60)
    db = sqlite3.connect(path, isolation_level=None, timeout=60)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # a COMMIT that returned survives a power cut
    db.executescript(SCHEMA)
    db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if row is None or row[0] != str(SCHEMA_VERSION):
        raise IngestError("%s: not a mini ingest database of schema %d" % (path, SCHEMA_VERSION))
    return db


def _uri_path(path):
    from urllib.parse import quote
    return quote(os.path.abspath(path))


def _check_ours(path, db):
    """True if ours, False if empty (nothing in it yet); IngestError if it is someone else's."""
    objects = db.execute("SELECT type, name FROM sqlite_master").fetchall()
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if not objects and not version:
        return False
    names = set(name for kind, name in objects if kind == "table")
    if "meta" in names:
        try:
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError:
            row = None
        if row is not None and row[0] == str(SCHEMA_VERSION) and {"messages", "incarnations", "rejected"} <= names:
            return True
    raise IngestError("%s: not a mini ingest database (it has other tables or settings); refusing to change it"
                      % path)


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


def _finite(text):
    value = float(text)  # 1e400 reads as inf, which is not JSON either
    if value - value != 0.0:
        raise ValueError("%s is not a finite number" % text)
    return value


def parse(topic, payload, prefix, max_payload):
    """(device, incarnation, backlog, [(id, payload JSON text)]) or raise Rejected."""
    if len(payload) > max_payload:
        raise Rejected("huge: %d bytes > --max-payload %d" % (len(payload), max_payload))
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != prefix or parts[2] != "up":
        raise Rejected("topic is not %s/DEVICE/up" % prefix)
    try:
        check_device(parts[1])
    except ValueError as exc:
        raise Rejected("topic: %s" % exc)
    try:
        msg = json.loads(payload.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Rejected("not JSON: %s" % exc)
    if not isinstance(msg, dict) or msg.get("v") != WIRE_VERSION:
        raise Rejected("shape: not an object with \"v\": %d" % WIRE_VERSION)
    device, inc, backlog, items = msg.get("d"), msg.get("i"), msg.get("n"), msg.get("m")
    if not isinstance(device, str):
        raise Rejected("shape: \"d\" (device id) is not a string")
    if device != parts[1]:
        raise Rejected("device id %r in the payload is not %r of the topic" % (device, parts[1]))
    if not isinstance(inc, str) or not 0 < len(inc) <= 64 or not _utf8(inc):
        raise Rejected("shape: \"i\" (incarnation) is not a string of 1..64 characters")
    if type(backlog) is not int or not 0 <= backlog <= MAX_ID:
        raise Rejected("shape: \"n\" (backlog) is not an int 0..2**63-1")
    if not isinstance(items, list) or not items:
        raise Rejected("shape: \"m\" is not a non-empty list")
    out = []
    last = 0
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and type(item[0]) is int and last < item[0] <= MAX_ID):
            raise Rejected("shape: \"m\" entries must be [id, message] with ids ascending from 1 to 2**63-1")
        last = item[0]
        try:
            text = json.dumps(item[1], ensure_ascii=False, separators=(",", ":"))
        except (ValueError, RecursionError) as exc:
            raise Rejected("message %d: %s" % (item[0], exc))
        if not _utf8(text):
            raise Rejected("message %d: a lone surrogate (\\ud800-\\udfff), which UTF-8 cannot hold" % item[0])
        out.append((item[0], text))
    return device, inc, backlog, out


def _utf8(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Store:
    """The database side: one transaction per batch of MQTT messages."""

    def __init__(self, db, prefix, max_payload):
        self.db = db
        self.prefix = prefix
        self.max_payload = max_payload
        self.stored = self.duplicates = self.rejected = self.conflicts = 0

    def write(self, received):
        """Store [(topic, payload)] in one transaction; return the acks [(device, incarnation, ids)]."""
        now = time.time()
        acks = []
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for topic, payload in received:
                try:
                    device, inc, backlog, items = parse(topic, payload, self.prefix, self.max_payload)
                except Rejected as exc:
                    self._reject(topic, payload, str(exc), now)
                    continue
                before = db.total_changes
                db.executemany("INSERT OR IGNORE INTO messages (device, incarnation, id, received_at, payload) "
                               "VALUES (?,?,?,?,?)",
                               [(device, inc, mid, now, text) for mid, text in items])
                new = db.total_changes - before
                dups = len(items) - new
                if dups:
                    dups -= self._conflicts(device, inc, items, now)
                # backlog: from the batch with the highest ids (ingesters commit batches out of order)
                db.execute("INSERT INTO incarnations VALUES (?,?,?,?,?,?,?) ON CONFLICT (device, incarnation) DO UPDATE "
                           "SET last_seen=excluded.last_seen, duplicates=duplicates+excluded.duplicates, "
                           "backlog=CASE WHEN excluded.last_id > last_id THEN excluded.backlog ELSE backlog END, "
                           "last_id=MAX(last_id, excluded.last_id)",
                           (device, inc, now, now, items[-1][0], backlog, dups))
                self.stored += new
                self.duplicates += dups
                acks.append((device, inc, [mid for mid, _ in items]))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return acks

    def _conflicts(self, device, inc, items, now):
        """Ids already stored with another message (the device's queue started again
        under the same incarnation: its segments deleted, or its flash region erased,
        and not forward.jsonl): kept in `conflicts`, never dropped as duplicates, and
        acked like the others. Returns how many."""
        found = 0
        for mid, text in items:
            row = self.db.execute("SELECT payload FROM messages WHERE device=? AND incarnation=? AND id=?",
                                  (device, inc, mid)).fetchone()
            if row is None or row[0] == text:
                continue  # stored by this transaction, or a true duplicate
            found += 1
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            self.db.execute("INSERT INTO conflicts VALUES (?,?,?,?,?,?,1) ON CONFLICT (device, incarnation, id, digest) "
                            "DO UPDATE SET times=times+1", (device, inc, mid, digest, now, text))
        self.conflicts += found
        return found

    def _reject(self, topic, payload, reason, now):
        self.rejected += 1
        digest = hashlib.sha256(payload).hexdigest()
        self.db.execute("INSERT INTO rejected VALUES (?,?,?,?,?,?,?,1) ON CONFLICT (topic, digest) DO UPDATE "
                        "SET last_at=excluded.last_at, times=times+1",
                        (topic[:256], digest, reason[:500], len(payload), payload[:REJECTED_HEAD], now, now))


def stats(db, now=None):
    """{"devices": [...], "rejected": [...]}: counts and lag per device."""
    now = time.time() if now is None else now
    devices = []
    # a database made before the conflicts table, opened read-only (--stats): none
    has_conflicts = db.execute("SELECT 1 FROM sqlite_master WHERE name='conflicts'").fetchone() is not None
    for row in db.execute(
            "SELECT device, COUNT(*), SUM(duplicates), MAX(last_seen) FROM incarnations GROUP BY device ORDER BY device"):
        device, incs, dups, last = row
        inc, backlog = db.execute("SELECT incarnation, backlog FROM incarnations WHERE device=? "
                                  "ORDER BY last_seen DESC LIMIT 1", (device,)).fetchone()
        count, first_id, last_id = db.execute(
            "SELECT COUNT(*), MIN(id), MAX(id) FROM messages WHERE device=? AND incarnation=?", (device, inc)).fetchone()
        total = db.execute("SELECT COUNT(*) FROM messages WHERE device=?", (device,)).fetchone()[0]
        conflicts = db.execute("SELECT COUNT(*) FROM conflicts WHERE device=?", (device,)).fetchone()[0] \
            if has_conflicts else 0
        devices.append({"device": device, "messages": total, "incarnations": incs, "duplicates_dropped": dups,
                        "conflicts": conflicts, "incarnation": inc, "incarnation_messages": count,
                        "last_id": last_id, "backlog": backlog, "silent_s": round(now - last, 3)})
    rejected = [{"reason": r, "payloads": n, "times": t} for r, n, t in db.execute(
        "SELECT reason, COUNT(*), SUM(times) FROM rejected GROUP BY reason ORDER BY reason")]
    return {"devices": devices, "rejected": rejected}


def print_stats(result, out):
    out.write("%-20s %10s %5s %10s %8s %9s\n" % ("device", "messages", "incs", "dups", "backlog", "silent_s"))
    for d in result["devices"]:
        out.write("%-20s %10d %5d %10d %8d %9.1f\n" % (d["device"], d["messages"], d["incarnations"],
                                                      d["duplicates_dropped"], d["backlog"], d["silent_s"]))
    for d in result["devices"]:
        if d["conflicts"]:
            out.write("conflicts: %s: %d ids stored before with another message (table conflicts)\n" % (
                d["device"], d["conflicts"]))
    for r in result["rejected"]:
        out.write("rejected: %d payloads, %d times: %s\n" % (r["payloads"], r["times"], r["reason"]))


def _broker(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % text)
    return host, int(port)


def run(args):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    db = open_db(args.db)
    store = Store(db, args.prefix, args.max_payload)
    inbox = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id or "",
                         protocol=mqtt.MQTTv5, manual_ack=True)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    if args.username:
        client.username_pw_set(args.username, args.password or os.environ.get("MINI_MQTT_PASSWORD"))
    if args.tls_ca or args.tls_cert:
        import ssl
        client.tls_set(ca_certs=args.tls_ca, certfile=args.tls_cert, keyfile=args.tls_key,
                       cert_reqs=ssl.CERT_REQUIRED)
        client.tls_insecure_set(args.tls_insecure)
    topic = "$share/%s/%s/+/up" % (args.group, args.prefix)
    state: dict = {"refused": None}

    def on_connect(c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            state["refused"] = str(reason_code)
            return
        c.subscribe(topic, qos=1)

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        code = reason_codes[0] if reason_codes else None
        if code is None or code.is_failure:
            state["refused"] = "subscribe %s: %s" % (topic, code)
        else:
            sys.stdout.write("mini ingest: subscribed to %s\n" % topic)
            sys.stdout.flush()

    def unreachable(c, userdata, *rest):
        # once per outage, not per retry: a broker that is not (or no longer) there is
        # said, not waited for in silence
        if not state.get("down"):
            state["down"] = True
            sys.stderr.write("mini ingest: cannot reach the broker at %s:%d; retrying\n" % args.broker)
            sys.stderr.flush()

    def on_disconnect(c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            unreachable(c, userdata)

    def on_connect_ok(c, userdata, flags, reason_code, properties):
        if not reason_code.is_failure and state.pop("down", None):
            sys.stderr.write("mini ingest: the broker is back\n")
        on_connect(c, userdata, flags, reason_code, properties)

    client.on_connect = on_connect_ok
    client.on_connect_fail = unreachable
    client.on_disconnect = on_disconnect
    client.on_subscribe = on_subscribe
    client.on_message = lambda c, u, msg: inbox.put((msg.topic, msg.payload, msg.mid, msg.qos))
    client.reconnect_delay_set(0.1, 2)  # pyright: ignore[reportArgumentType] (paho takes float seconds)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    host, port = args.broker
    client.connect_async(host, port, keepalive=30)
    client.loop_start()
    try:
        while not stop:
            if state["refused"]:
                raise IngestError("the broker refused: %s" % state["refused"])
            try:
                first = inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < args.batch:
                try:
                    batch.append(inbox.get_nowait())
                except queue.Empty:
                    break
            acks = store.write([(t, p) for t, p, _, _ in batch])   # committed (durable) here
            for device, inc, ids in acks:
                client.publish("%s/%s/ack" % (args.prefix, device),
                               json.dumps({"i": inc, "ids": ids}, separators=(",", ":")), qos=1)
            for _, _, mid, qos in batch:
                if qos:
                    client.ack(mid, qos)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
        db.close()
        sys.stderr.write("mini ingest: stored %d, duplicates dropped %d, conflicts kept %d, rejected %d\n" % (
            store.stored, store.duplicates, store.conflicts, store.rejected))
    return 0


def cmd_ingest(args):
    try:
        if args.stats:
            db = open_db(args.db, create=False)
            result = stats(db)
            db.close()
            if args.json:
                sys.stdout.write(json.dumps(result, indent=2) + "\n")
            else:
                print_stats(result, sys.stdout)
            return 0
        if args.broker is None:
            raise IngestError("--broker HOST:PORT is required (or --stats)")
        return run(args)
    except (IngestError, sqlite3.Error) as exc:
        sys.stderr.write("mini ingest: %s\n" % exc)
        return 2


def register(sub):
    """Add `ingest` to the `mini` parser's subcommands."""
    p = sub.add_parser("ingest", help="store what devices forward (miniforward) into SQLite, exactly once")
    p.add_argument("--db", required=True, help="SQLite database (created if missing)")
    p.add_argument("--broker", type=_broker, metavar="HOST:PORT", help="the MQTT broker")
    p.add_argument("--stats", action="store_true", help="print counts and lag per device, then exit")
    p.add_argument("--json", action="store_true", help="--stats as JSON")
    p.add_argument("--prefix", default="mini", help="topic prefix (default mini: mini/DEVICE/up, mini/DEVICE/ack)")
    p.add_argument("--group", default="mini-ingest", help="shared subscription group (default mini-ingest)")
    p.add_argument("--client-id", default=None, help="MQTT client id (default: one the broker assigns)")
    p.add_argument("--username", help="MQTT user name")
    p.add_argument("--password", help="MQTT password (or the MINI_MQTT_PASSWORD environment variable)")
    p.add_argument("--tls-ca", metavar="FILE", help="CA certificate to verify the broker with (turns TLS on)")
    p.add_argument("--tls-cert", metavar="FILE", help="client certificate (TLS)")
    p.add_argument("--tls-key", metavar="FILE", help="client key (TLS)")
    p.add_argument("--tls-insecure", action="store_true", help="do not check the broker's host name")
    p.add_argument("--max-payload", type=int, default=1 << 20, metavar="BYTES",
                   help="larger payloads are rejected (default 1 MiB)")
    p.add_argument("--batch", type=int, default=256, metavar="N", help="MQTT messages per transaction (default 256)")
    p.set_defaults(func=cmd_ingest)
