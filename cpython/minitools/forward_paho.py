"""The miniforward transport on CPython (a Linux gateway): paho-mqtt, driven from
Forwarder.pump() with no thread of its own (client.loop(0) in poll()).

    from miniqueue import MiniQueue
    from miniforward import Forwarder
    from minitools.forward_paho import PahoTransport

    q = MiniQueue.open("outbox")
    fw = Forwarder(q, PahoTransport("broker.lan", 1883, username="dev1", password="..."), "dev1", batch=32)
    while True:
        q.put(read_sensor())
        fw.pump()
"""
import ssl
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from miniforward import LinkDown


class PahoTransport:
    """MQTT 3.1.1 (or 5 with protocol=5), clean session, QoS 1 both ways.

    tls_ca: a CA file to verify the broker with (TLS on); tls_insecure skips
    the host name check (a test certificate made for 127.0.0.1 has it right).
    """

    def __init__(self, host, port=1883, client_id=None, username=None, password=None, tls_ca=None,
                 tls_insecure=False, keepalive=60, timeout=5.0, protocol=4):
        self.host = host
        self.port = port
        self.client_id = client_id or ""
        self.username = username
        self.password = password
        self.tls_ca = tls_ca
        self.tls_insecure = tls_insecure
        self.keepalive = keepalive
        self.timeout = timeout
        self.protocol = mqtt.MQTTv5 if protocol == 5 else mqtt.MQTTv311
        self._c = None
        self._inbox = []
        self._state = None

    def connect(self):
        self.close()
        kwargs = {"client_id": self.client_id, "protocol": self.protocol}
        if self.protocol != mqtt.MQTTv5:
            kwargs["clean_session"] = True
        client = mqtt.Client(CallbackAPIVersion.VERSION2, **kwargs)
        client.max_inflight_messages_set(1000)  # the Forwarder's window is the limit
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls_ca:
            client.tls_set(ca_certs=self.tls_ca, cert_reqs=ssl.CERT_REQUIRED)
            client.tls_insecure_set(self.tls_insecure)
        client.on_message = lambda c, u, msg: self._inbox.append((msg.topic, msg.payload))
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        self._state = None
        self._c = client
        try:
            client.connect(self.host, self.port, self.keepalive)
        except Exception as exc:  # refused, unreachable, TLS failure...
            self.close()
            raise LinkDown("connect: %r" % (exc,))
        self._wait("connect")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self._state = ("connect", reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._state = ("subscribe", reason_codes[0] if reason_codes else None)

    def _wait(self, what):
        deadline = time.monotonic() + self.timeout
        while self._state is None or self._state[0] != what:
            if time.monotonic() > deadline:
                self.close()
                raise LinkDown("%s: no answer in %.1f s" % (what, self.timeout))
            try:
                self._loop(0.05)
            except LinkDown:
                if self._state is not None and self._state[0] == what:
                    break  # refused: paho drops the connection right after the CONNACK
                raise
        code = self._state[1]
        if code is None or code.is_failure:
            self.close()
            raise LinkDown("%s refused: %s" % (what, code))

    def _loop(self, timeout):
        client = self._c
        if client is None:
            raise LinkDown("not connected")
        try:
            rc = client.loop(timeout)
        except Exception as exc:  # ssl errors and the like come out of paho as exceptions
            rc = exc
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self.close()
            raise LinkDown("connection lost: %s" % (mqtt.error_string(rc) if isinstance(rc, int) else rc,))

    def subscribe(self, topic):
        self._state = None
        result, _ = self._c.subscribe(topic, 1) if self._c else (mqtt.MQTT_ERR_NO_CONN, None)
        if result != mqtt.MQTT_ERR_SUCCESS:
            self.close()
            raise LinkDown("subscribe: %s" % result)
        self._wait("subscribe")

    def publish(self, topic, payload):
        if self._c is None:
            raise LinkDown("not connected")
        info = self._c.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.close()
            raise LinkDown("publish: %s" % info.rc)

    def poll(self):
        # paho reads a few packets per loop(); loop until a pass brings nothing new
        for _ in range(16):
            before = len(self._inbox)
            self._loop(0)
            if len(self._inbox) == before:
                break
        inbox = self._inbox
        self._inbox = []
        return inbox

    def close(self):
        client = self._c
        self._c = None
        if client is not None:
            try:
                client._reset_sockets()  # the socket and paho's wake-up pair: no fd left behind
            except Exception:
                pass
