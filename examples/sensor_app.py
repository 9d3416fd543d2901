# A sensor node for a MicroPython board (real or virtual): install it as /main.py,
# with the bricks it needs in /lib (micropython/README.md; a list by hand once left out
# minisnapio, which the first automatic snapshot imports):
#   mpremote connect PORT mip install micropython/ministate/package.json \
#       + mip install micropython/miniqueue/package.json + fs cp examples/sensor_app.py :main.py
#
# Every cycle it counts a reading in a ministate counter (/data/state) and puts the
# reading into a miniqueue outbox (/data/outbox); a pretend uplink sends (get + ack)
# the oldest messages whenever more than 4 wait. After each operation returns (it
# is durable then), it prints an acknowledgement on the serial console:
#   ack count SEQ VALUE      the counter is VALUE, journaled as seq SEQ
#   ack put ID               reading ID is in the outbox
#   sending ID               message ID was taken from the outbox (get) and is being sent
#   ack sent ID              message ID was sent and acked: it must never come back
# A power cut at any moment loses none of them (an acked put is in the outbox, or was
# being sent: a cut between ack() and its print leaves "sending ID" as the last word
# on it); the host checks that with
# `mini pull` and the console log (tests/test_virtual_board.py).
# Ctrl-C (any mpremote command) stops it cleanly; it runs on CPython too
# (python3 examples/sensor_app.py [DIR], with shared/ on PYTHONPATH).
import sys
import time

from ministate import StateManager, Mutator
from miniqueue import MiniQueue

INITIAL = {"count": 0}


class Count(Mutator):
    def __init__(self, by):
        self.by = by

    def apply(self, state):
        state["count"] += self.by


def run(root, cycles=None, period_ms=0):
    state = StateManager.open(root + "/state", initial=INITIAL, mutators=[Count], snapshot_every=40)
    try:
        outbox = MiniQueue.open(root + "/outbox", max_bytes=2048)
    except BaseException:
        state.close()
        raise
    try:
        print("sensor_app: up, count %d, seq %d, outbox %d" % (state.state["count"], state.seq, len(outbox)))
        done = 0
        while cycles is None or done < cycles:
            seq = state.apply(Count(by=1))
            print("ack count %d %d" % (seq, state.state["count"]))
            mid = outbox.put({"reading": state.state["count"], "temp_c": 20 + state.state["count"] % 7})
            print("ack put %d" % mid)
            while len(outbox) > 4:
                item = outbox.get()
                print("sending %d" % item[0])
                outbox.ack(item[0])
                print("ack sent %d" % item[0])
            done += 1
            if period_ms:
                time.sleep_ms(period_ms) if hasattr(time, "sleep_ms") else time.sleep(period_ms / 1000)
    finally:
        outbox.close()
        state.close()


if __name__ == "__main__":
    if sys.implementation.name == "micropython" and not sys.argv:
        run("/data")  # on the board: for ever, or until Ctrl-C
    else:
        run(sys.argv[1] if len(sys.argv) > 1 else "data", cycles=int(sys.argv[2]) if len(sys.argv) > 2 else 100)
