# miniforward: store and forward. Drains a MiniQueue (the durable outbox) to an
# MQTT broker, in queue order, at least once, with QoS 1; a message leaves the
# queue only when the host ingester (`mini ingest`) says, on this device's ack
# topic, that it stored it durably. A broker's PUBACK is not that: mosquitto
# writes its persistence file every autosave_interval (1800 s by default).
#
# No threads: the app calls pump() from its loop (or an asyncio task). Puts keep
# working while the network is down; the queue's max_bytes/on_full bound them.
#
# Identity of a message: (device, incarnation, id). id is the queue's message id
# (the seq of its put, ascending in queue order, never reused by a queue); the
# incarnation is a random value created with the queue's directory and kept in
# DIR/forward.jsonl (FORMAT.md 7.1), so a queue made anew (a reflash, a wiped
# directory) whose ids restart at 1 is a new incarnation, never taken for
# duplicates. The wire format is FORMAT.md 7.2.
import minishim as shim
from ministore import MiniStore, MiniError

import time

_MICROPYTHON_TICKS = hasattr(time, "ticks_ms")


def _ticks_ms():
    if _MICROPYTHON_TICKS:
        return time.ticks_ms()  # pyright: ignore[reportAttributeAccessIssue] (MicroPython only)
    return int(time.monotonic() * 1000)  # pyright: ignore[reportAttributeAccessIssue] (CPython only)


def _ticks_diff(a, b):
    if _MICROPYTHON_TICKS:
        return time.ticks_diff(a, b)  # pyright: ignore[reportAttributeAccessIssue]
    return a - b


def _ticks_add(a, b):
    if _MICROPYTHON_TICKS:
        return time.ticks_add(a, b)  # pyright: ignore[reportAttributeAccessIssue]
    return a + b


def _sleep_ms(ms):
    if _MICROPYTHON_TICKS:
        time.sleep_ms(ms)  # pyright: ignore[reportAttributeAccessIssue]
    else:
        time.sleep(ms / 1000)


IDENTITY_FILE = "forward.jsonl"
WIRE_VERSION = 1
_DEVICE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."


class LinkDown(OSError):
    """The transport lost (or could not make) its connection. Adapters raise only this."""


class IdentityError(MiniError):
    """DIR/forward.jsonl holds records but no incarnation: refused, never replaced."""


def check_device(device):
    """A device id is 1..64 characters of [A-Za-z0-9_.-] (it is an MQTT topic level and a username)."""
    if not isinstance(device, str) or not 0 < len(device) <= 64 or device.startswith("."):
        raise ValueError("device id must be 1..64 characters of [A-Za-z0-9_.-]: %r" % (device,))
    for ch in device:
        if ch not in _DEVICE_CHARS:
            raise ValueError("device id must be 1..64 characters of [A-Za-z0-9_.-]: %r" % (device,))
    return device


def _random_hex(nbytes):
    try:
        import os
        data = os.urandom(nbytes)  # pyright: ignore[reportAttributeAccessIssue] (every port we run on has it)
    except (ImportError, AttributeError):
        import random
        data = bytes(random.getrandbits(8) for _ in range(nbytes))
    return "".join("%02x" % b for b in data)


def incarnation(directory):
    """The queue's incarnation (16 hex digits), created durably on first use.

    It lives in DIR/forward.jsonl, a ministore journal whose first record is
    {"incarnation": "..."}. It is written (synced) before any message can be
    sent under it, so a crash before that leaves no record and a new value is
    made; once written it never changes.
    """
    path = shim.join(directory, IDENTITY_FILE)
    found = []
    store = MiniStore.open(path, replay=lambda seq, record: found.append(record))
    try:
        for record in found:
            if isinstance(record, dict) and isinstance(record.get("incarnation"), str):
                value = record["incarnation"]
                if not 0 < len(value) <= 64:
                    raise IdentityError("%s: the incarnation must be 1..64 characters: %r" % (path, value))
                return value
        if found:
            raise IdentityError("%s holds %d records and no incarnation" % (path, len(found)))
        value = _random_hex(8)
        store.append({"incarnation": value})
        return value
    finally:
        store.close()


class Forwarder:
    """Drains `queue` through `transport` (UmqttTransport, or minitools.forward_paho.PahoTransport).

    batch: messages per publish (at most max_payload bytes of JSON, but never
    fewer than one). window: publishes awaiting the ingester's ack at once.
    resend_ms: a publish not acked by then is sent again (the ingester drops
    the duplicate). retry_ms..max_retry_ms: reconnect backoff, doubled per failure.
    The queue must have no max_deliveries (ValueError): a message that went dead
    would never be sent. A message that alone is over max_payload is never sent:
    it goes to the queue's dead letters (counted in `oversize`, said in last_error),
    so that it does not hold back the ones after it; keep the ingester's
    --max-payload at least the devices' max_payload.
    """

    def __init__(self, queue, transport, device, prefix="mini", batch=1, window=4, max_payload=16 * 1024,
                 resend_ms=10000, retry_ms=500, max_retry_ms=30000):
        if not isinstance(batch, int) or batch < 1 or not isinstance(window, int) or window < 1:
            raise ValueError("batch and window must be ints >= 1")
        if getattr(queue, "max_deliveries", None) is not None:
            raise ValueError("the queue must have no max_deliveries: a message that went dead would never be sent")
        self.queue = queue
        self.device = check_device(device)
        self.incarnation = incarnation(queue.directory)
        self.up_topic = "%s/%s/up" % (prefix, device)
        self.ack_topic = "%s/%s/ack" % (prefix, device)
        self.batch = batch
        self.window = window
        self.max_payload = max_payload
        self.resend_ms = resend_ms
        self.retry_ms = retry_ms
        self.max_retry_ms = max_retry_ms
        self._t = transport
        self._head = ('{"v":%d,"d":%s,"i":%s,"n":' % (
            WIRE_VERSION, shim.dumps(device), shim.dumps(self.incarnation))).encode()
        self._batches = []      # [ids, payload bytes, ticks when last sent or None], oldest first
        self._waiting = {}      # id -> its batch, for every id sent and not yet acked by the ingester
        self.connected = False
        self._backoff = retry_ms
        self._retry_at = _ticks_ms()
        # counters, for the app's own telemetry
        self.sent = 0           # messages taken from the queue and published (or tried) once
        self.resent = 0         # messages published again (no ack in time, a reconnect, a failed try)
        self.confirmed = 0      # messages the ingester acked, now acked in the queue
        self.connects = 0
        self.failures = 0       # connection attempts that failed, and connections lost
        self.oversize = 0       # messages over max_payload on their own: dead letters, never sent
        self.last_error = None

    def pending(self):
        """Messages sent and not yet confirmed by the ingester."""
        return len(self._waiting)

    def idle(self):
        """Nothing to send and nothing awaiting an ack."""
        return not self._waiting and len(self.queue) == 0

    def pump(self):
        """One step: (re)connect when due, take the ingester's acks, send what is due.

        Returns how many messages were confirmed (acked in the queue) in this step.
        Network errors never escape: they are counted, and the step returns. Queue
        errors (the flash) do escape.
        """
        now = _ticks_ms()
        if not self.connected:
            if _ticks_diff(now, self._retry_at) < 0 or not self._connect(now):
                return 0
        try:
            received = self._t.poll()
        except LinkDown as exc:
            received = ()
            self._down(now, exc)
        confirmed = 0
        for topic, payload in received:
            confirmed += self._on_ack(payload)
        if not self.connected:
            return confirmed
        for batch in self._batches:
            if batch[2] is None or _ticks_diff(now, batch[2]) >= self.resend_ms:
                if not self._send(batch, now):
                    return confirmed
                self.resent += len(batch[0])
        while len(self._batches) < self.window:
            batch = self._take()
            if batch is None:
                break
            self._batches.append(batch)
            for mid in batch[0]:
                self._waiting[mid] = batch
            self.sent += len(batch[0])
            if not self._send(batch, now):
                break
        return confirmed

    def flush(self, timeout_ms=30000, step_ms=5):
        """pump() until everything is confirmed or timeout_ms pass; True if everything was."""
        start = _ticks_ms()
        while not self.idle():
            if _ticks_diff(_ticks_ms(), start) >= timeout_ms:
                return False
            if not self.pump():
                _sleep_ms(step_ms)
        return True

    def close(self):
        """Disconnect. Messages not confirmed stay in the queue (in flight; a reopen delivers them again)."""
        self.connected = False
        self._t.close()

    # -- internals

    def _connect(self, now):
        try:
            self._t.connect()
            self._t.subscribe(self.ack_topic)
        except LinkDown as exc:
            self._down(now, exc)
            return False
        self.connected = True
        self.connects += 1
        self._backoff = self.retry_ms
        for batch in self._batches:
            batch[2] = None  # the broker may have lost it: send again now
        return True

    def _down(self, now, exc):
        self.connected = False
        self.failures += 1
        self.last_error = exc
        self._t.close()
        self._retry_at = _ticks_add(now, self._backoff)
        self._backoff = min(self._backoff * 2, self.max_retry_ms)

    def _send(self, batch, now):
        try:
            self._t.publish(self.up_topic, batch[1])
        except LinkDown as exc:
            self._down(now, exc)
            return False
        batch[2] = now
        return True

    def _take(self):
        """The next batch from the queue: [ids, payload, None], or None when the queue is empty."""
        ids = []
        parts = []
        size = len(self._head) + 16
        queue = self.queue
        while len(ids) < self.batch:
            # peek, then get only what fits: a message taken and put back (nack) would
            # count a delivery and follow the queue's retry delay, out of order
            item = queue.peek()
            if item is None:
                break
            body = b"[%d,%s]" % (item[0], shim.dumps(item[1]).encode())
            if ids and size + len(body) + 1 > self.max_payload:
                break  # it opens the next batch
            taken = queue.get()
            if taken is None:
                break
            if taken[0] != item[0]:  # another consumer took the one peeked (the forwarder should be the only one)
                body = b"[%d,%s]" % (taken[0], shim.dumps(taken[1]).encode())
                if ids and size + len(body) + 1 > self.max_payload:
                    queue.nack(taken[0])
                    break
            if size + len(body) + 1 > self.max_payload:
                queue.dead_letter(taken[0])
                self.oversize += 1
                self.last_error = ValueError("message %d is %d bytes, over max_payload: a dead letter" % (
                    taken[0], len(body)))
                continue
            ids.append(taken[0])
            parts.append(body)
            size += len(body) + 1
        if not ids:
            return None
        payload = self._head + b'%d,"m":[%s]}' % (len(self.queue), b",".join(parts))
        return [ids, payload, None]

    def _on_ack(self, payload):
        # {"i": incarnation, "ids": [id, ...]} from the ingester, after its commit.
        try:
            ack = shim.loads(payload)
            ids = ack["ids"] if ack.get("i") == self.incarnation else ()
        except (ValueError, TypeError, KeyError, AttributeError):
            return 0  # not an ack of ours: ignored, the resend timer covers any loss
        if not isinstance(ids, list):
            return 0
        done = 0
        for mid in ids:
            batch = self._waiting.pop(mid, None) if type(mid) is int else None  # not True for id 1
            if batch is None:
                continue  # a late or repeated ack
            self.queue.ack(mid)
            done += 1
            batch[0].remove(mid)
            if not batch[0]:
                self._batches.remove(batch)
        self.confirmed += done
        return done


class _TimedSocket:
    """umqtt.simple turns its socket blocking after the first byte of a packet; this
    keeps a timeout on it instead, so a dead link raises rather than hangs."""

    def __init__(self, sock, timeout):
        self._s = sock
        self._timeout = timeout

    def setblocking(self, flag):
        if flag:
            try:
                self._s.settimeout(self._timeout)
            except (AttributeError, OSError):
                self._s.setblocking(True)
        else:
            self._s.setblocking(False)

    def read(self, n):
        data = self._s.read(n)
        while data is not None and 0 < len(data) < n:  # a short read: the rest, up to EOF
            rest = self._s.read(n - len(data))
            if not rest:
                break
            data = data + rest
        return data

    def write(self, buf, *args):
        return self._s.write(buf, *args)

    def close(self):
        self._s.close()


class UmqttTransport:
    """The transport on MicroPython: umqtt.simple (micropython-lib). MQTT 3.1.1,
    clean session, QoS 1 both ways. ssl: an ssl.SSLContext (or True), as umqtt takes it."""

    def __init__(self, server, port=0, client_id=None, user=None, password=None, ssl=None,
                 keepalive=60, timeout=5):
        from umqtt.simple import MQTTClient  # pyright: ignore[reportMissingImports] (micropython-lib)
        self._cls = MQTTClient
        self.server = server
        self.port = port
        self.client_id = client_id
        self.user = user
        self.password = password
        self.ssl = ssl
        self.keepalive = keepalive
        self.timeout = timeout
        self._c = None
        self._inbox = []
        self._last_write = 0

    def _on_message(self, topic, payload):
        self._inbox.append((topic, payload))

    def connect(self):
        self.close()
        client = self._cls(self.client_id or "mini", self.server, self.port, self.user, self.password,
                           self.keepalive, self.ssl)
        client.set_callback(self._on_message)
        try:
            try:
                client.connect(True, self.timeout)
            except TypeError:  # umqtt.simple before 1.5 takes no timeout
                client.connect(True)
            client.sock = _TimedSocket(client.sock, self.timeout)
        except Exception as exc:  # umqtt raises OSError, MQTTException, AssertionError, IndexError...
            try:
                client.sock.close()
            except Exception:
                pass
            raise LinkDown("connect: %r" % (exc,))
        self._c = client
        self._last_write = _ticks_ms()

    def _call(self, what, *args):
        if self._c is None:
            raise LinkDown("not connected")
        try:
            return getattr(self._c, what)(*args)
        except Exception as exc:
            self.close()
            raise LinkDown("%s: %r" % (what, exc))

    def subscribe(self, topic):
        self._call("subscribe", topic, 1)
        self._last_write = _ticks_ms()

    def publish(self, topic, payload):
        self._call("publish", topic, payload, False, 1)  # returns after the broker's PUBACK
        self._last_write = _ticks_ms()

    def poll(self):
        for _ in range(64):
            if self._call("check_msg") is None:
                break
        if self.keepalive and _ticks_diff(_ticks_ms(), self._last_write) >= self.keepalive * 500:
            self._call("ping")
            self._last_write = _ticks_ms()
        inbox = self._inbox
        self._inbox = []
        return inbox

    def close(self):
        client = self._c
        self._c = None
        if client is not None:
            try:
                client.sock.close()
            except Exception:
                pass
