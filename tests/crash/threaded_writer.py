# Crash-test writer with threads (CPython only). Run by tests/test_crash_threads.py,
# which SIGKILLs it while its threads append to one MiniStore.
#
#   python threaded_writer.py JOURNAL THREADS SEED
#
# Each thread t appends records make_record(t, i) for i = 1, 2, ... (continuing after
# the last i of t already in the journal), as single appends and as batches. After
# each call returns, it writes "t first_i last_i last_seq\n" to stdout in one
# os.write (atomic on a pipe): records first_i..last_i of thread t are acknowledged,
# the last at seq last_seq.
import os
import random
import sys
import threading


def make_record(t, i):
    """The record i of thread t: a pure function of (t, i)."""
    rng = random.Random(t * 1_000_003 + i)
    return {"t": t, "i": i, "x": rng.random(), "text": "%d-%d-" % (t, i) + "y" * rng.randint(0, 3000)}


def main(argv):
    path, threads, seed = argv[1], int(argv[2]), int(argv[3])
    from ministore import MiniStore

    last = {}

    def seen(seq, rec):
        last[rec["t"]] = rec["i"]
    store = MiniStore.open(path, replay=seen)
    out = sys.stdout.fileno()

    def worker(t):
        rng = random.Random(seed * 7919 + t * 31 + store.seq)
        i = last.get(t, 0)
        while True:
            if rng.random() < 0.5:
                seq = store.append(make_record(t, i + 1))
                count = 1
            else:
                count = rng.randint(2, 8)
                seq = store.append_many([make_record(t, i + k) for k in range(1, count + 1)])
            os.write(out, b"%d %d %d %d\n" % (t, i + 1, i + count, seq))
            i += count

    for t in range(threads):
        threading.Thread(target=worker, args=(t,), daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv)
