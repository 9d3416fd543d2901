# main.py for the virtual board in tests/test_forward_board.py (the test fills in
# PORT, DEVICE and COUNT): log COUNT readings into a MiniQueue on LittleFS and forward
# them with miniforward over umqtt.simple, printing "put ID BOOT N" for every put that
# returned, then "idle" once the ingester confirmed them all.
import time
from ministore import MiniStore
from miniqueue import MiniQueue
from miniforward import Forwarder, UmqttTransport

PORT = 0
DEVICE = "board"
COUNT = 0

with MiniStore.open("/data/boots.jsonl") as boots:  # tells the readings of each boot apart
    boot = boots.append({"boot": 1})
q = MiniQueue.open("/data/outbox", max_bytes=256 * 1024)
fw = Forwarder(q, UmqttTransport("127.0.0.1", PORT, client_id=DEVICE, timeout=2), DEVICE,
               batch=4, resend_ms=1500, retry_ms=100, max_retry_ms=1000)
print("boot", boot, "incarnation", fw.incarnation, "backlog", len(q))
for n in range(COUNT):
    mid = q.put({"n": n, "r": boot, "t": time.ticks_ms()})
    print("put %d %d %d" % (mid, boot, n))
    fw.pump()
    time.sleep_ms(5)
done = fw.flush(120000)
print("%s: sent %d, resent %d, confirmed %d, connections %d, link failures %d" % (
    "idle" if done else "not idle", fw.sent, fw.resent, fw.confirmed, fw.connects, fw.failures))
