# Crash-test producer for miniqueue (CPython only). Run by tests/test_crash_miniqueue.py
# next to tests/crash/queue_consumer.py; the test SIGKILLs both at random moments.
#
#   python queue_producer.py DIRECTORY SEED FIRST_COUNTER MAX_BYTES COMPACT_BYTES PAUSE [LIMITS]
#
# LIMITS (tests/test_crash_miniqueue_limits.py): MAX_DELIVERIES (0: None) and ON_FULL,
# e.g. "2,drop_oldest": the queue is opened with them, and each put line says how many
# messages the put dropped (q.dropped before and after it).
#
# A queue has one writer at a time (an flock on DIRECTORY/.lock; a second open()
# raises LockedError), so producer and consumer take turns: each opens the queue
# (retrying after a short random sleep while the other holds it), does a few
# operations, closes it and sleeps a little (PAUSE scales the sleeps; 0 when it runs
# alone). A SIGKILL releases the flock.
#
# Message number N (the counter) is message(N), a pure function of N; counters are
# never reused, even by a later run (the test passes FIRST_COUNTER).
#
# Lines on stdout (each one os.write, atomic on a pipe):
#   start                   the process runs
#   opening / open          before MiniQueue.open (and its retries) / after it returned
#   open-error TEXT         open() raised something other than LockedError (a failure
#                           for the test); the worker logs it and retries
#   try N K                 about to put messages N..N+K-1 (K == 1: put, else put_many)
#   put ID... N             put/put_many returned these ids (for N, N+1, ...): acknowledged
#   put ID... N dropped D   the same, on_full="drop_oldest": q.dropped went up by D in it
#   full N K                QueueFull: nothing was written, counters N..N+K-1 are skipped
#   ckpt-begin / ckpt-end   around compact() (a checkpoint and removal of old segments)
#   closing / closed        around close()
import random
import sys
import time

from harness import emit  # tests/crash/ is on sys.path: the script's directory, or put there by the test
from ministore import LockedError
from miniqueue import MiniQueue, QueueFull


def message(n):
    """Message number n: a pure function of n, 20 to 150 bytes of JSON."""
    rng = random.Random(n * 2654435761)
    return {"n": n, "body": "".join(rng.choices("abcdefghij\"\\/\u00e9\u20ac", k=rng.randint(0, 110)))}


def parse_limits(text):
    """The LIMITS argument "MAX_DELIVERIES,ON_FULL" as open()'s keywords ({} if absent)."""
    if not text:
        return {}
    deliveries, on_full = text.split(",")
    return {"max_deliveries": int(deliveries) or None, "on_full": on_full}


def open_queue(directory, max_bytes, compact_bytes, rng, **limits):
    """Open the queue, waiting while the other process holds it. limits: more keywords
    of open() (max_deliveries, on_full, unsynced_events)."""
    emit("opening")
    while True:
        try:
            q = MiniQueue.open(directory, max_bytes=max_bytes, compact_bytes=compact_bytes,
                               sync="always", **limits)
        except LockedError:
            time.sleep(rng.uniform(0.0005, 0.003))
            continue
        except Exception as exc:
            # Never expected: the test fails on any such line. Logged and retried, so
            # the campaign goes on and its other checks still run.
            emit(("open-error %s: %s" % (type(exc).__name__, exc)).replace("\n", " ")[:400])
            time.sleep(rng.uniform(0.0005, 0.003))
            continue
        emit("open")
        compact = q._compact  # what compact() and the automatic trigger both call, under the lock

        def marked_compact():
            emit("ckpt-begin")
            count = compact()
            emit("ckpt-end")
            return count
        q._compact = marked_compact  # also when put/get/ack call it: it is looked up on the instance
        return q


def close_queue(q):
    emit("closing")
    q.close()
    emit("closed")


def put_logged(q, n, k, drops):
    """Put messages n..n+k-1 (put if k == 1, else put_many) and log it: "try", then "put"
    (with the drops if `drops`) or "full". True if they were put."""
    emit("try %d %d" % (n, k))
    before = q.dropped
    try:
        if k == 1:
            ids = [q.put(message(n))]
        else:
            ids = q.put_many([message(n + i) for i in range(k)])
    except (QueueFull, ValueError):  # ValueError: it can never fit; nothing is written either way
        emit("full %d %d" % (n, k))
        return False
    emit("put %s %d%s" % (" ".join("%d" % i for i in ids), n,
                          " dropped %d" % (q.dropped - before) if drops else ""))
    return True


def main(argv):
    directory, seed, n = argv[1], int(argv[2]), int(argv[3])
    max_bytes, compact_bytes, scale = int(argv[4]), int(argv[5]), float(argv[6])
    limits = parse_limits(argv[7] if len(argv) > 7 else "")
    drops = limits.get("on_full") == "drop_oldest"
    emit("start")
    rng = random.Random(seed * 7919 + n)
    while True:
        q = open_queue(directory, max_bytes, compact_bytes, rng, **limits)
        pause = rng.uniform(0.0, 0.002) * scale
        for _ in range(rng.randint(1, 6)):
            k = 1 if rng.random() < 0.7 else rng.randint(2, 4)
            if not put_logged(q, n, k, drops):
                n += k
                pause = rng.uniform(0.005, 0.015) * scale  # let the consumer catch up
                break
            n += k
        close_queue(q)
        if pause:
            time.sleep(pause)


if __name__ == "__main__":
    main(sys.argv)
