# The sensor logger that boards/esp32/main.py and boards/rp2040/main.py run.
# Copy it to the board's /lib with the bricks (see the board READMEs).
#
# Each reading goes into a ministate counter (/data/state: durable control state,
# sync="always") and a miniqueue outbox (/data/outbox: telemetry, a batch sync
# policy to spare the flash). A pretend uplink sends (get + ack) what waits.
# After each durable step it prints one line on the serial console.
import time

from ministate import StateManager, Mutator
from miniqueue import MiniQueue


class Count(Mutator):
    def __init__(self, by):
        self.by = by

    def apply(self, state):
        state["count"] += self.by


INITIAL = {"count": 0}


def run(read_temperature, outbox_sync=16, period_ms=1000, cycles=None, root="/data"):
    state = StateManager.open(root + "/state", initial=INITIAL, mutators=[Count], snapshot_every=100)
    # sync=N is a valid policy; the checker infers str from open()'s default, "always".
    outbox = MiniQueue.open(root + "/outbox", max_bytes=8 * 1024, on_full="drop_oldest",
                            sync=outbox_sync)
    try:
        print("logger: up, count %d, outbox %d waiting" % (state.state["count"], len(outbox)))
        done = 0
        while cycles is None or done < cycles:
            seq = state.apply(Count(by=1))
            print("ack count %d %d" % (seq, state.state["count"]))
            outbox.put({"n": state.state["count"], "temp_c": read_temperature()})
            while len(outbox) > 8:  # the pretend uplink
                delivered = outbox.get()  # (id, message), or None once nothing is ready
                if delivered is None:
                    break
                outbox.ack(delivered[0])
            done += 1
            time.sleep_ms(period_ms) if hasattr(time, "sleep_ms") else time.sleep(period_ms / 1000)
    finally:
        outbox.close()  # syncs what the batch policy still holds
        state.close()
