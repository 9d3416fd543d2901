# Crash-test consumer for miniqueue (CPython only). Run by tests/test_crash_miniqueue.py
# next to tests/crash/queue_producer.py (see there for how the two share the queue).
#
#   python queue_consumer.py DIRECTORY SEED MAX_BYTES COMPACT_BYTES PAUSE [LIMITS FIRST_COUNTER]
#
# With LIMITS ("MAX_DELIVERIES,ON_FULL", as queue_producer.py's; run by
# tests/test_crash_miniqueue_limits.py) the consumer opens the queue with them and with
# a random unsynced_events (1, 3 or 32) each turn, nacks more often (so that messages
# reach max_deliveries), sometimes moves a message to the dead letters (dead_letter)
# or purges them (purge_dead), and sometimes puts a message (numbers from FIRST_COUNTER
# on) while it holds one in flight: drop_oldest must pass over that one.
#
# Each turn: open the queue, get up to a few messages one at a time and handle each:
# mostly ack it, sometimes nack it (it must come back at once: it is the oldest), and
# sometimes close the queue with it still in flight (it must be delivered again, first,
# after the reopen); now and then sync() (gets and acks durable) or compact(); then
# close and sleep a little (PAUSE scales the sleeps).
#
# Lines on stdout (each one os.write, atomic on a pipe), besides start, opening/open,
# ckpt-begin/ckpt-end and closing/closed as in queue_producer.py:
#   got ID N OK        get() returned message ID, whose content is message number N;
#                      OK is 1 if the content is exactly message(N), else 0
#   empty              get() returned None
#   acked ID           ack(ID) returned. With durability="puts" (the default) the ack is
#                      durable, so that the message is never delivered again, once the
#                      queue's "closed" line follows (FORMAT.md 5.2); a kill before that
#                      may undo it
#   nacked ID          nack(ID) returned
#   abandon ID         the queue is closed with ID in flight
#   synced             q.sync() returned: every get and ack of the session so far is
#                      durable (a get that its ack replaced before it was written is
#                      not: the ack alone is, FORMAT.md 5.2)
# and with LIMITS:
#   deadletter ID      dead_letter(ID) returned (durable: every event before it is too)
#   purged K           purge_dead() returned K (durable, as dead_letter, if K > 0: a purge
#                      of none writes nothing)
#   try / put / full   a put, logged as queue_producer.py's (durable: so is all before it)
import random
import sys
import time

from harness import emit  # tests/crash/ is on sys.path: the script's directory, or put there by the test
from queue_producer import close_queue, message, open_queue, parse_limits, put_logged


def main_limits(directory, rng, max_bytes, compact_bytes, scale, limits, n):
    drops = limits.get("on_full") == "drop_oldest"
    while True:
        q = open_queue(directory, max_bytes, compact_bytes, rng,
                       unsynced_events=rng.choice((1, 3, 32, 32)), **limits)
        pause = rng.uniform(0.0, 0.001) * scale
        for _ in range(rng.randint(1, 10)):
            item = q.get()
            if item is None:
                emit("empty")
                pause = rng.uniform(0.002, 0.008) * scale
                break
            mid, msg = item
            n_got = msg.get("n") if isinstance(msg, dict) else None
            ok = isinstance(n_got, int) and msg == message(n_got)
            emit("got %d %s %d" % (mid, n_got if isinstance(n_got, int) else -1, 1 if ok else 0))
            if rng.random() < 0.15:  # a put with a message in flight
                put_logged(q, n, 1, drops)
                n += 1
            pick = rng.random()
            if pick < 0.35:
                q.nack(mid)
                emit("nacked %d" % mid)
            elif pick < 0.45:
                q.dead_letter(mid)
                emit("deadletter %d" % mid)
            elif pick < 0.50:
                emit("abandon %d" % mid)
                break
            else:
                q.ack(mid)
                emit("acked %d" % mid)
            if rng.random() < 0.15:
                q.sync()
                emit("synced")
        if rng.random() < 0.1:
            emit("purged %d" % q.purge_dead())
        if rng.random() < 0.3:
            q.compact()
        close_queue(q)
        if pause:
            time.sleep(pause)


def main(argv):
    directory, seed = argv[1], int(argv[2])
    max_bytes, compact_bytes, scale = int(argv[3]), int(argv[4]), float(argv[5])
    emit("start")
    if len(argv) > 6:
        return main_limits(directory, random.Random(seed), max_bytes, compact_bytes, scale,
                           parse_limits(argv[6]), int(argv[7]))
    rng = random.Random(seed)
    while True:
        q = open_queue(directory, max_bytes, compact_bytes, rng)
        pause = rng.uniform(0.0, 0.001) * scale
        for _ in range(rng.randint(1, 10)):
            item = q.get()
            if item is None:
                emit("empty")
                pause = rng.uniform(0.002, 0.008) * scale  # let the producer put something
                break
            mid, msg = item
            n = msg.get("n") if isinstance(msg, dict) else None
            ok = isinstance(n, int) and msg == message(n)
            emit("got %d %s %d" % (mid, n if isinstance(n, int) else -1, 1 if ok else 0))
            pick = rng.random()
            if pick < 0.08:
                q.nack(mid)
                emit("nacked %d" % mid)
            elif pick < 0.11:
                emit("abandon %d" % mid)
                break
            else:
                q.ack(mid)
                emit("acked %d" % mid)
            if rng.random() < 0.2:  # a consumer that wants its gets durable now: they are then written apart from their acks
                q.sync()
                emit("synced")
        if rng.random() < 0.3:
            # compact() called by the app: acks take few bytes (each replaces its get), so
            # the consumer seldom reaches compact_bytes itself, and its checkpoints (which
            # drop what it acked) must be cut by kills too
            q.compact()
        close_queue(q)
        if pause:
            time.sleep(pause)


if __name__ == "__main__":
    main(sys.argv)
