"""Benchmarks of miniqueue (shared/miniqueue.py), as ratios to baselines timed in the same run.

    python3 bench/bench_miniqueue.py [--quick] [--no-mp]

Contenders take turns in many short interleaved rounds (rotating order); a rate
is the median over the rounds, and a ratio the median of the per-round ratios.
Read the ratios, not the absolute numbers. A benchmark, not a test: it never
fails on a slow figure.

1. put + get + ack per message, sync="always" (three durable operations)  vs
   a raw loop of three os.write + os.fsync of the same lines, and  vs
   persist-queue's SQLiteAckQueue (auto_commit=True: put, get, ack, each one
   committed; sqlite3 WAL) on the same disk; the queue also without compaction
   (compact_bytes=1 GiB), to show what its compactions cost. The persist-queue row is skipped,
   with a note, if the package is not installed (pip install persist-queue, or
   the project's "bench" extra).
2. put_many(100 messages)  vs  100 puts, both sync="always"
3. put from 8 producer threads  vs  from 1 thread, sync="always" (group commit:
   threads that put at once share one sync; each put is durable when it returns)
4. MicroPython on LittleFS (bench/mp_miniqueue.py): flash erases and bytes
   programmed per message (put + get + ack), sync="always" and sync=16, with
   compactions.

MINI_BENCH_SHARED=/path/to/a/copy/of/shared benchmarks a candidate core (the
MicroPython part uses it too). The scratch dir is on a real disk, as for
bench_ministore.py ($MINI_BENCH_DIR overrides it).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (Fresh, interleaved, median, print_table, record, run_main,  # noqa: E402
                      run_micropython, singles_vs_batch, sync_latency, load_note)

from miniqueue import MiniQueue  # noqa: E402
from ministore import encode_json, record_line  # noqa: E402

try:
    from persistqueue import SQLiteAckQueue
    import persistqueue
    PERSIST_VERSION = getattr(persistqueue, "__version__", "?")
except ImportError:
    SQLiteAckQueue = None
    PERSIST_VERSION = None

RAW_FSYNC = "raw 3 x (os.write + os.fsync)"
RAW_FDATASYNC = "raw 3 x (os.write + os.fdatasync)"
RAW_ONE = "raw 3 x os.write, 1 os.fsync (one durable put)"
QUEUE = 'miniqueue put+get+ack, sync="always" (durability="puts")'
QUEUE_STRICT = 'miniqueue, durability="all"'
QUEUE_NO_COMPACT = "miniqueue, no compaction (compact_bytes=1 GiB)"
PERSIST = "persist-queue SQLiteAckQueue"


# ---------------------------------------------------------------- 1: a durable message round trip

def bench_roundtrip(root, rounds, block):
    """Each contender keeps one queue (or file) open and passes `block` messages per round."""
    fresh = Fresh(root)
    messages = [record(i) for i in range(rounds * block)]
    # The lines miniqueue writes for them (put, get, ack; seqs from 1, the header aside),
    # so the raw loop writes as many bytes with the same number of syncs.
    lines = []
    for i, msg in enumerate(messages):
        mid = 3 * i + 1
        lines.append((record_line(mid, encode_json({"put": msg})), record_line(mid + 1, encode_json({"get": mid})),
                      record_line(mid + 2, encode_json({"ack": mid}))))
    per_message = sum(len(a) + len(b) + len(c) for a, b, c in lines) / len(lines)
    handles = []
    info = {}

    def raw(sync_fn, syncs=3):
        fd = os.open(fresh("raw"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        handles.append(lambda: os.close(fd))
        at = [0]

        def run():
            chunk = lines[at[0]:at[0] + block]
            at[0] += block
            write = os.write
            t0 = time.perf_counter()
            for put, get, ack in chunk:
                write(fd, put)
                sync_fn(fd)
                write(fd, get)
                if syncs == 3:
                    sync_fn(fd)
                write(fd, ack)
                if syncs == 3:
                    sync_fn(fd)
            return block, time.perf_counter() - t0
        return run

    def queue(durability="puts", compact_bytes=None):
        path = fresh("queue")
        # defaults: max_bytes = compact_bytes = 64 KiB
        q = MiniQueue.open(path, sync="always", durability=durability, compact_bytes=compact_bytes)
        compactions = [0]
        inner = q._compact  # what compact() and the automatic trigger both call

        def compact():  # counted, not changed
            compactions[0] += 1
            return inner()
        q._compact = compact
        if durability == "puts" and compact_bytes is None:
            handles.append(lambda: info.update(compactions=compactions[0], queue_segments=len(q._log.segments),
                                               queue_disk=q.disk_bytes()) or q.close())
        else:
            handles.append(q.close)
        at = [0]

        def run():
            chunk = messages[at[0]:at[0] + block]
            at[0] += block
            put, get, ack = q.put, q.get, q.ack
            t0 = time.perf_counter()
            for msg in chunk:
                put(msg)
                mid, _ = get()
                ack(mid)
            secs = time.perf_counter() - t0
            assert len(q) == 0
            return block, secs
        return run

    def persist():
        path = fresh("persist")
        pq = SQLiteAckQueue(path, auto_commit=True, multithreading=False)
        info["persist_synchronous"] = pq._conn.execute("PRAGMA synchronous").fetchone()[0]
        info["persist_journal"] = pq._conn.execute("PRAGMA journal_mode").fetchone()[0]
        handles.append(lambda: info.update(persist_acked=pq.acked_count()) or pq.close())
        at = [0]

        def run():
            chunk = messages[at[0]:at[0] + block]
            at[0] += block
            put, get, ack = pq.put, pq.get, pq.ack
            t0 = time.perf_counter()
            for msg in chunk:
                put(msg)
                item = get(block=False)
                ack(item)
            return block, time.perf_counter() - t0
        return run

    try:
        contenders = [(RAW_FSYNC, raw(os.fsync))]
        if hasattr(os, "fdatasync"):
            contenders.append((RAW_FDATASYNC, raw(os.fdatasync)))
        contenders.append((RAW_ONE, raw(os.fsync, syncs=1)))
        contenders.append((QUEUE, queue()))
        contenders.append((QUEUE_NO_COMPACT, queue(compact_bytes=1 << 30)))
        contenders.append((QUEUE_STRICT, queue("all")))
        if SQLiteAckQueue is not None:
            contenders.append((PERSIST, persist()))
        result = interleaved(rounds, contenders)
    finally:
        for close in handles:
            close()
    print_table("1. put + get + ack: %d interleaved rounds of %d messages each,"
                " %.0f journal bytes per message" % (rounds, block, per_message),
                result, "messages/s", "vs raw fsync", cpu=True, cpu_label="user CPU/msg")
    ratio = result.ratio(QUEUE, RAW_ONE)
    print("  miniqueue / raw loop of one durable put (3 writes, 1 fsync): %.2fx  (goal >= 0.9x: %s)" % (
        ratio, "MET" if ratio >= 0.9 else "MISSED"))
    print("  the same without compaction / raw loop of one durable put: %.2fx  (what the default compactions cost)"
          % result.ratio(QUEUE_NO_COMPACT, RAW_ONE))
    print("  miniqueue / raw 3 x (os.write+os.fsync) loop: %.2fx" % result.ratio(QUEUE))
    print('  miniqueue, durability="all" (3 syncs a message) / raw 3 x fsync: %.2fx' % result.ratio(QUEUE_STRICT))
    if RAW_FDATASYNC in result.names:
        print("  miniqueue / raw 3 x (os.write+os.fdatasync) loop (the call ministore makes): %.2fx"
              % result.ratio(QUEUE, RAW_FDATASYNC))
    if PERSIST in result.names:
        ratio = result.ratio(QUEUE, PERSIST)
        print("  miniqueue / persist-queue %s SQLiteAckQueue: %.2fx  (goal >= 2.0x: %s; its sqlite3: journal_mode=%s,"
              " synchronous=%s; acked rows are kept: %d at the end)" % (
                  PERSIST_VERSION, ratio, "MET" if ratio >= 2.0 else "MISSED", info["persist_journal"],
                  {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(info["persist_synchronous"]),
                  info["persist_acked"]))
        first, last = result.rates[PERSIST][:3], result.rates[PERSIST][-3:]
        print("  persist-queue, first 3 rounds vs last 3: %s vs %s messages/s (its WAL file grows until"
              " its first checkpoint, then is overwritten in place)" % (
                  "/".join("%.0f" % r for r in first), "/".join("%.0f" % r for r in last)))
        half = rounds // 2
        late = median([a / b for a, b in zip(result.rates[QUEUE][half:], result.rates[PERSIST][half:])])
        print("  miniqueue / persist-queue over the last %d rounds only: %.2fx" % (rounds - half, late))
    else:
        print("  persist-queue: SKIPPED, the package is not installed"
              " (pip install persist-queue, or pip install -e '.[bench]')")
    print("  miniqueue compactions during the run: %d (compact_bytes=64 KiB); at the end %d segment(s),"
          " %d bytes on disk" % (info["compactions"], info["queue_segments"], info["queue_disk"]))
    print("  (messages/s: median over the rounds; ratios: median of the per-round ratios;"
          " user CPU: user-mode CPU time per message, from getrusage)")
    print()
    return result


# ---------------------------------------------------------------- 2: batches

def bench_batches(root, rounds, singles, batches, size=100):
    """`singles` messages put one by one vs `batches` put_many calls of `size` messages, per round.
    Nothing is taken out: max_bytes and compact_bytes are set high enough that the queues
    never fill up and never compact during the run."""
    fresh = Fresh(root)
    batch = [record(i) for i in range(size)]
    one, many = "%d x put" % size, "put_many(%d messages)" % size
    big = 1 << 30
    single_q = MiniQueue.open(fresh("single"), sync="always", max_bytes=big, compact_bytes=big)
    batch_q = MiniQueue.open(fresh("batch"), sync="always", max_bytes=big, compact_bytes=big)
    try:
        result = singles_vs_batch(rounds, batch, singles, batches, single_q.put, batch_q.put_many, (one, many))
        held = len(single_q), len(batch_q)
    finally:
        single_q.close()
        batch_q.close()
    print_table('2. batches, sync="always": %d interleaved rounds of %d puts and %d put_many(%d)'
                % (rounds, singles // size * size, batches, size), result, "messages/s", "vs puts", cpu=True,
                cpu_label="user CPU/msg")
    print("  (the queues end holding %d and %d messages; no compaction during the run)" % held)
    print()
    return result


# ---------------------------------------------------------------- 3: producer threads

ONE_PRODUCER = 'put, sync="always", 1 thread'
EIGHT_PRODUCERS = 'put, sync="always", 8 producer threads on one queue'


def bench_producers(root, rounds, block, threads=8):
    """Durable puts per second from 8 threads against 1 (issue 15's goal: >= 4x)."""
    import threading
    fresh = Fresh(root)
    handles = []
    big = 1 << 30

    def contender(count):
        q = MiniQueue.open(fresh("producers%d" % count), sync="always", max_bytes=big, compact_bytes=big)
        handles.append(q.close)

        def run():
            ready = threading.Barrier(count + 1)  # the clock starts once every thread is up

            def worker(t):
                messages = [record(t * block + i) for i in range(block // count)]
                ready.wait()
                for message in messages:
                    q.put(message)
            workers = [threading.Thread(target=worker, args=(t,)) for t in range(count)]
            for w in workers:
                w.start()
            ready.wait()
            t0 = time.perf_counter()
            for w in workers:
                w.join()
            return (block // count) * count, time.perf_counter() - t0
        return run

    before = sync_latency(root)
    try:
        result = interleaved(rounds, [(ONE_PRODUCER, contender(1)), (EIGHT_PRODUCERS, contender(threads))])
    finally:
        for close in handles:
            close()
    after = sync_latency(root)
    print_table("3. producer threads: %d interleaved rounds of %d durable puts" % (rounds, block), result,
                "messages/s", "vs 1 thread", cpu=True, cpu_label="user CPU/msg")
    # The ratio grows with the sync's latency (more puts share each sync): print it, and the load.
    print("  os.write + fdatasync of one line, before / after the rounds: median %.0f / %.0f us; %s" % (
        before[0] * 1e6, after[0] * 1e6, load_note()))
    ratio = result.ratio(EIGHT_PRODUCERS)
    low, high = result.range(EIGHT_PRODUCERS)
    print("  8 producer threads / 1 thread: %.2fx, rounds from %.2fx to %.2fx  (goal >= 4x: %s)" % (
        ratio, low, high, "MET" if ratio >= 4.0 else "MISSED"))
    print()
    return result


# ---------------------------------------------------------------- 4: MicroPython

def bench_micropython(messages):
    label = "4. MicroPython"
    got = run_micropython(label, "mp_miniqueue.py", [messages])
    if not got:
        return got
    results, cmd, version = got
    print("4. MicroPython %s: `%s` (cwd: repo root)" % (version, cmd))
    wear = [r for r in results if r["kind"] == "wear"]
    if wear:
        r0 = wear[0]
        print("  LittleFS on a RAM block device: %d messages, each put + get + ack (%d journal events in all);"
              % (r0["messages"], r0["events"]))
        print("  counted after mkfs, mount and the queue's creation, up to and including close();"
              " max_bytes = compact_bytes = %d" % r0["compact_bytes"])
        print("  %-7s %-9s %-7s %-11s %8s %10s %12s %12s   %s" % (
            "board", "geometry", "sync", "durability", "erases", "erases/msg", "prog B/msg", "compactions",
            "of which in compact(): erases, prog B"))
        for r in wear:
            n = r["messages"]
            print("  %-7s %-9s %-7s %-11s %8d %10.3f %12.0f %12d   %d, %d%s" % (
                r["geometry"], "%d/%d" % (r["block_size"], r["prog_size"]), r["sync"],
                r["durability"] + ("" if r.get("reopen", True) else "*"),
                r["erases"], r["erases"] / n, r["programmed"] / n, r["compactions"], r["compact_erases"],
                r["compact_programmed"],
                "   (goal <= 1.1 erases/msg: %s)" % ("MET" if r["erases"] / n <= 1.1 else "MISSED")
                if r["sync"] == "always" and r["durability"] == "puts" else ""))
        print("  (*: without the journal's LittleFS reopens, MiniStore.refresh: FORMAT.md 2.3, BENCHMARKS.md)")
        print("  (geometry: block size / program size; at the end: %d segment, %d-%d bytes on disk)" % (
            max(r["segments"] for r in wear), min(r["disk_bytes"] for r in wear),
            max(r["disk_bytes"] for r in wear)))
    print()
    return results


# ---------------------------------------------------------------- main

def main(argv=None):
    def cpython_part(root, quick):
        bench_roundtrip(root, rounds=6 if quick else 30, block=20 if quick else 100)
        bench_batches(root, rounds=4 if quick else 20, singles=100 if quick else 200, batches=5 if quick else 20)
        bench_producers(root, rounds=4 if quick else 15, block=160 if quick else 400)

    persist = "persist-queue: %s" % (PERSIST_VERSION or "not installed (its row is skipped)")
    return run_main("miniqueue", argv, cpython_part, lambda: bench_micropython(2000), notes=[persist])


if __name__ == "__main__":
    sys.exit(main())
