# Crash test for miniqueue (CPython only): a producer (tests/crash/queue_producer.py)
# and a consumer (tests/crash/queue_consumer.py), each SIGKILLed at random moments,
# hundreds of times, with a small max_bytes / compact_bytes so that many kills land
# while a checkpoint is written or old segments are removed (half the kills are aimed
# there: a few ms after a "ckpt-begin" line). From their
# acknowledgement logs, and from the queue left behind after each kill, the test checks:
#
# - no acknowledged put is lost: it is delivered at least once, or still in the queue;
# - no message whose ack was acknowledged is ever delivered again;
# - order: deliveries follow the ids (FIFO); a nacked message comes back at once, in
#   its place; messages in flight at a kill or a close are delivered again first;
# - a put_many is atomic, a put refused with QueueFull wrote nothing, and every
#   message is delivered with its exact content;
# - after each kill, MiniQueue.inspect() (read-only) and MiniQueue.open() succeed, and
#   draining a copy of the directory gives exactly the messages the model expects;
#   at the end a drain of the queue itself gives exactly those.
#
# A queue has one writer at a time (an flock; a second open() raises LockedError), so
# the two processes never have it open together. Two schedules:
#
# - taking turns: the producer runs alone until it is killed, then the consumer,
#   and so on; the queue is checked after every kill;
# - side by side: both run at once, each opening the queue for a few operations and
#   retrying while the other holds it (LockedError); each is killed at its own random
#   moment; the queue is checked when both are dead. Any other error from open() is a
#   failure (the workers log it as "open-error" and retry, so the campaign goes on
#   and the other properties are still checked).
import bisect
import os
import random
import shutil
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CRASH = os.path.join(HERE, "crash")
import harness  # noqa: E402  (tests/crash is on sys.path: conftest.py)
import reliability  # noqa: E402
from queue_producer import message
from miniqueue import MiniQueue  # noqa: E402

pytestmark = harness.needs_sigkill()

PRODUCER = os.path.join(CRASH, "queue_producer.py")
CONSUMER = os.path.join(CRASH, "queue_consumer.py")
MAX_BYTES = 3000       # about 40 messages
COMPACT_BYTES = 300    # a checkpoint every few operations
# Seconds from a worker's first line ("start") to its SIGKILL. A worker alone (taking
# turns) that fills or empties the queue then only reopens it to find it full or
# empty, so alone they get less time, the producer (the faster one) least.
KILL_DELAY = (0.0, 0.080)
PRODUCER_ALONE_DELAY = (0.0, 0.025)
CONSUMER_ALONE_DELAY = (0.0, 0.060)
# Half the runs are aimed at compaction: the kill comes, if sooner, a random 0-1.5 ms
# after the worker's 1st to 4th "ckpt-begin" line. A checkpoint takes 3 syncs since
# 22c5c19 (5 before), under 1 ms here: with 0-3 ms, 99-174 of about 200 aimed kills
# landed inside it, and a run could miss MIN_COMPACTION_KILLS.
AIMED = 0.5
AIM_DELAY = (0.0, 0.0015)

MARKERS = {"start", "opening", "open", "ckpt-begin", "ckpt-end", "closing", "closed"}
PHASE = {None: "idle", "start": "idle", "closed": "idle", "opening": "opening",
         "open": "operations", "ckpt-end": "operations", "ckpt-begin": "compaction",
         "closing": "close"}


class Checker:
    """The model of the queue, checked against the logs and the directory after each kill."""

    def __init__(self, tmp_path, name):
        self.directory = str(tmp_path / name)
        self.copy_dir = str(tmp_path / (name + "-copy"))
        self.tmp_path = tmp_path
        self.name = name
        self.queue = []          # [(id, n)] in the queue after the last check (in flight included)
        self.n_of = {}           # id -> message number, for every message that existed
        self.id_of = {}          # message number -> id
        self.acked = set()       # ids whose ack was acknowledged and durable ("acked", then "closed")
        self.unsure_gets = {}    # id -> gets logged in sessions a kill cut (they may be undone)
        # id -> consumer kills that may have hidden a delivery of it: a get() that returned,
        # journaled and counted, before its "got" line. Only of the message the consumer
        # would get next; hidden_after: kills when none was ready (the next put's message).
        self.hidden = {}
        self.hidden_after = []
        self.put_acked = {}      # id -> n of acknowledged puts
        self.full = set()        # message numbers refused with QueueFull
        self.delivered = set()   # ids delivered at least once ("got")
        self.got_count = {}      # id -> "got" lines
        self.next_counter = 0    # first message number of the next producer run
        self.max_put_id = 0
        self.kills = {"producer": 0, "consumer": 0}
        self.phases = {}         # "producer/compaction" -> kills
        self.compaction_kills = 0
        self.aimed = 0           # runs whose kill was aimed at compaction
        self.checkpoints = 0
        self.puts = 0            # acknowledged puts
        self.acks = 0            # acknowledged acks
        self.nacks = 0
        self.abandons = 0
        self.fulls = 0
        self.redeliveries = 0    # deliveries of a message delivered before (after a nack, close or kill)
        self.lost = 0
        self.redelivered_acked = 0
        self.order_violations = 0
        self.bad = 0             # wrong content, ghost messages, broken batches, bad counts
        self.open_errors = []
        self.errors = []         # first few messages, for the assertion
        self.started = time.monotonic()

    def fail(self, kind, text):
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.errors) < 20:
            self.errors.append("%s: %s (check %d of %s)" % (kind, text, sum(self.kills.values()),
                                                            self.directory))

    # -- running the workers

    def run(self, rng, producer, consumer, pause):
        """Start the producer and/or the consumer side by side, SIGKILL each at a random
        moment, then check everything. `pause` scales the workers' sleeps."""
        def aim():
            if rng.random() < AIMED:
                self.aimed += 1
                return ("ckpt-begin", rng.randint(1, 4), rng.uniform(*AIM_DELAY))
            return None
        children = []
        if producer:
            children.append(harness.Child(
                PRODUCER, [self.directory, rng.randrange(1 << 30), self.next_counter, MAX_BYTES,
                           COMPACT_BYTES, pause], str(self.tmp_path / "producer.stderr"),
                rng.uniform(*(KILL_DELAY if consumer else PRODUCER_ALONE_DELAY)), aim()))
        if consumer:
            children.append(harness.Child(
                CONSUMER, [self.directory, rng.randrange(1 << 30), MAX_BYTES, COMPACT_BYTES, pause],
                str(self.tmp_path / "consumer.stderr"),
                rng.uniform(*(KILL_DELAY if producer else CONSUMER_ALONE_DELAY)), aim()))
        logs = harness.run_and_kill(children)
        p_lines = logs[0] if producer else []
        c_lines = logs[-1] if consumer else []
        for who, lines in (("producer", p_lines if producer else None),
                           ("consumer", c_lines if consumer else None)):
            if lines is None:
                continue
            self.kills[who] += 1
            phase = PHASE[harness.phase_at_kill(lines, MARKERS)]
            key = "%s/%s" % (who, phase)
            self.phases[key] = self.phases.get(key, 0) + 1
            if phase == "compaction":
                self.compaction_kills += 1
            for line in lines:
                if line == "ckpt-begin":
                    self.checkpoints += 1
                elif line.startswith("open-error"):
                    self.open_errors.append("%s: %s" % (who, line))
        try:
            self.check(p_lines, c_lines)
        except Exception as exc:
            if isinstance(exc, AssertionError):
                raise
            # Recovery itself failed: say where, with what the workers did last.
            raise AssertionError(
                "after kill %d (producer %s, consumer %s), recovery raised %s: %s\n"
                "directory: %s\nproducer's last lines: %r\nconsumer's last lines: %r\n%s\n%s" % (
                    sum(self.kills.values()), producer, consumer, type(exc).__name__, exc,
                    sorted(os.listdir(self.directory)), p_lines[-8:], c_lines[-8:],
                    self.summary(final=False),
                    "\n".join(self.errors + self.open_errors[:10]))) from exc

    # -- the logs

    def _producer(self, lines, new_puts):
        """Acknowledged puts (their ids appended to new_puts) and QueueFull refusals;
        returns the attempt that may have landed: [n, ...] of the last "try" with no
        answer, or []."""
        pending = []
        for line in lines:
            words = line.split()
            if words[0] == "try":
                n, k = int(words[1]), int(words[2])
                assert n >= self.next_counter
                pending = list(range(n, n + k))
                self.next_counter = n + k
            elif words[0] == "full":
                self.full.update(pending)
                self.fulls += 1
                pending = []
            elif words[0] == "put":
                ids = [int(w) for w in words[1:-1]]
                n = int(words[-1])
                if len(ids) != len(pending) or n != pending[0]:
                    self.fail("bad", "put line %r does not answer the try %r" % (line, pending))
                for i, mid in enumerate(ids):
                    if mid <= self.max_put_id:
                        self.fail("order_violations", "put id %d after id %d" % (mid, self.max_put_id))
                    self.max_put_id = max(self.max_put_id, mid)
                    self._bind(mid, n + i)
                    self.put_acked[mid] = n + i
                    new_puts.append(mid)
                    self.puts += 1
                pending = []
        return pending

    def _bind(self, mid, n):
        """Record that message number n has id mid (each is unique)."""
        if self.n_of.get(mid, n) != n or self.id_of.get(n, mid) != mid:
            self.fail("bad", "id %d holds message %d, but was %r / message %d was id %r" % (
                mid, n, self.n_of.get(mid), n, self.id_of.get(n)))
        if n in self.full:
            self.fail("bad", "message %d was refused with QueueFull, yet it is id %d" % (n, mid))
        self.n_of[mid] = n
        self.id_of[n] = mid

    def check(self, p_lines, c_lines):
        new_puts = []
        maybe = self._producer(p_lines, new_puts)  # an attempted put that may have landed
        maybe_set = set(maybe)
        # Messages certainly ready at the start: the last check's queue (in-flight ones
        # are ready again after a restart) and every put acknowledged since.
        before = set(mid for mid, n in self.queue)
        ready = sorted(before | set(new_puts))

        # -- the consumer's deliveries, in order
        in_hand = None           # the id got and not yet acked/nacked/abandoned
        session_last = None      # last id delivered in this session
        nacked = None            # id nacked just now: the next get must return it
        acked_now = set()
        landed = set()           # ids of the "maybe" put that were delivered
        # durability="puts": a get or an ack is durable when the session's close returns
        # ("closed"); the kill can undo those of the session it cut (FORMAT.md 5.2).
        session_acks = set()
        session_gets = {}
        for line in c_lines:
            words = line.split()
            kind = words[0]
            if kind in ("closed", "synced"):
                self.acked |= session_acks
                session_acks = set()
                session_gets = {}
            if kind == "open":
                session_last = None
                nacked = None
            elif kind == "got":
                mid, n, ok = int(words[1]), int(words[2]), words[3] == "1"
                self.got_count[mid] = self.got_count.get(mid, 0) + 1
                session_gets[mid] = session_gets.get(mid, 0) + 1
                if not ok:
                    self.fail("bad", "message %d delivered with the wrong content (n=%d)" % (mid, n))
                if mid in self.acked:
                    self.fail("redelivered_acked", "message %d delivered after its ack was acknowledged" % mid)
                elif mid in self.n_of:
                    if self.n_of[mid] != n:
                        self.fail("bad", "message %d delivered as number %d, put as %d" % (
                            mid, n, self.n_of[mid]))
                elif n in maybe_set:
                    self._bind(mid, n)
                    landed.add(mid)
                else:
                    self.fail("bad", "message %d (number %d) was never put" % (mid, n))
                # FIFO: no message certainly ready may have a smaller id.
                i = bisect.bisect_left(ready, mid)
                if i > 0:
                    self.fail("order_violations", "delivered %d while %r were ready before it" % (
                        mid, ready[:i][:5]))
                if i < len(ready) and ready[i] == mid:
                    del ready[i]
                elif mid in self.delivered and mid not in landed:
                    self.fail("order_violations", "message %d delivered again, but it was not ready" % mid)
                if nacked is not None and mid != nacked:
                    self.fail("order_violations", "nacked %d, then got %d" % (nacked, mid))
                if session_last is not None and mid <= session_last and mid != nacked:
                    self.fail("order_violations", "got %d after %d in one session" % (mid, session_last))
                if mid in self.delivered:
                    self.redeliveries += 1
                self.delivered.add(mid)
                session_last = mid
                nacked = None
                in_hand = mid
            elif kind == "acked":
                mid = int(words[1])
                assert mid == in_hand, line
                session_acks.add(mid)
                acked_now.add(mid)
                self.acks += 1
                in_hand = None
            elif kind in ("nacked", "abandon"):
                mid = int(words[1])
                assert mid == in_hand, line
                bisect.insort(ready, mid)  # ready again, in its place
                if kind == "nacked":
                    nacked = mid
                    self.nacks += 1
                else:
                    self.abandons += 1
                in_hand = None
        if c_lines and in_hand is None:  # killed between two messages: perhaps inside a get()
            if nacked is not None:
                self.hidden[nacked] = self.hidden.get(nacked, 0) + 1
            elif ready:
                self.hidden[ready[0]] = self.hidden.get(ready[0], 0) + 1
            else:
                self.hidden_after.append(max(self.n_of) if self.n_of else 0)
        # in_hand: the consumer was killed holding it; its ack may or may not be journaled.
        # session_acks, session_gets: of the session the kill cut; they may or may not be durable.
        for mid in session_gets:
            self.unsure_gets[mid] = self.unsure_gets.get(mid, 0) + session_gets[mid]

        # -- the queue as a restart finds it
        view = MiniQueue.inspect(self.directory)  # read-only, must succeed
        q = MiniQueue.open(self.directory, max_bytes=MAX_BYTES, compact_bytes=COMPACT_BYTES)
        try:
            reopened = len(q)
            if q.in_flight() != 0:
                self.fail("bad", "a reopened queue has %d messages in flight" % q.in_flight())
        finally:
            q.close()
        queue = self._drain_copy()
        ids = [mid for mid, n in queue]
        if ids != sorted(ids) or len(set(ids)) != len(ids):
            self.fail("order_violations", "a drain delivered ids out of order: %r" % ids)
        if len(view) + view.in_flight() != len(queue) or reopened != len(queue):
            self.fail("bad", "inspect() says %d ready + %d in flight, open() %d, a drain gives %d" % (
                len(view), view.in_flight(), reopened, len(queue)))
        if view.dead() or view.dropped:
            self.fail("bad", "dead letters or drops in a queue without max_deliveries/drop_oldest")

        # Every message of the queue is one the model knows, or the last attempted put.
        for mid, n in queue:
            if mid in self.acked:
                self.fail("redelivered_acked", "message %d is in the queue after its ack was acknowledged" % mid)
            elif mid in self.n_of:
                if self.n_of[mid] != n:
                    self.fail("bad", "message %d in the queue as number %d, put as %d" % (
                        mid, n, self.n_of[mid]))
            elif n in maybe_set:
                self._bind(mid, n)
                landed.add(mid)
            else:
                self.fail("bad", "message %d (number %d) in the queue was never put" % (mid, n))
        for threshold in list(self.hidden_after):  # the first message put after that kill, once known
            later = [mid for mid in self.n_of if mid > threshold]
            if later:
                self.hidden[min(later)] = self.hidden.get(min(later), 0) + 1
                self.hidden_after.remove(threshold)
        for mid, n in queue:
            # A kill of the consumer may hide one delivery of the message it would get next
            # (get() journaled, "got" not written), and undo the gets of the session it cut
            # (durability="puts"): never more. (Bounded by every kill of the campaign, this
            # let a replay that counted each get twice pass.)
            logged = self.got_count.get(mid, 0)
            if not logged - self.unsure_gets.get(mid, 0) <= view.deliveries(mid) <= logged + self.hidden.get(mid, 0):
                self.fail("bad", "message %d: %d deliveries counted, %d logged, %d perhaps hidden by kills" % (
                    mid, view.deliveries(mid), logged, self.hidden.get(mid, 0)))
        # A put_many is atomic: all of the attempted batch landed, or none.
        if landed:
            batch = [self.id_of.get(n) for n in maybe]
            if None in batch or batch != list(range(batch[0], batch[0] + len(batch))):
                self.fail("bad", "put_many of %r landed in part: ids %r" % (maybe, batch))
            for mid in batch:
                if mid is not None:
                    self.max_put_id = max(self.max_put_id, mid)

        # Nothing lost: every message that was in the queue, put (acknowledged or landed)
        # and not acknowledged as acked is still there -- except the one the consumer
        # held when it was killed, whose ack may have reached the journal.
        present = set(ids)
        expected = set(before) | set(mid for mid in self.put_acked if mid not in self.acked) | landed
        expected -= self.acked
        for mid in sorted(expected - present):
            if mid == in_hand or mid in session_acks:
                self.acked.add(mid)  # its ack reached the journal: it must never come back
                continue
            self.fail("lost", "message %d (number %d) is gone without an acknowledged ack" % (
                mid, self.n_of.get(mid, -1)))
        if in_hand is not None and in_hand not in present:
            self.acked.add(in_hand)  # its ack was journaled: it must never come back
        self.queue = queue

    def _drain_copy(self):
        """[(id, n)] delivered by draining a copy of the directory (the queue itself is untouched)."""
        shutil.rmtree(self.copy_dir, ignore_errors=True)
        shutil.copytree(self.directory, self.copy_dir)
        try:
            return self._drain(self.copy_dir)
        finally:
            shutil.rmtree(self.copy_dir, ignore_errors=True)

    def _drain(self, directory):
        out = []
        q = MiniQueue.open(directory, max_bytes=MAX_BYTES, compact_bytes=COMPACT_BYTES)
        try:
            while True:
                item = q.get()
                if item is None:
                    break
                mid, msg = item
                n = msg.get("n") if isinstance(msg, dict) else None
                if not isinstance(n, int) or msg != message(n):
                    self.fail("bad", "message %d drained with the wrong content: %r" % (mid, msg))
                    n = -1
                out.append((mid, n))
                q.ack(mid)
        finally:
            q.close()
        return out

    def finish(self):
        """Drain the queue itself: exactly the messages of the model, in order."""
        final = self._drain(self.directory)
        if final != self.queue:
            self.fail("bad", "the final drain gave %r, the model %r" % (final[:10], self.queue[:10]))
        final_ids = set(mid for mid, n in final)
        for mid in self.put_acked:
            if mid not in self.delivered and mid not in final_ids:
                self.fail("lost", "acknowledged put %d was never delivered" % mid)
        view = MiniQueue.inspect(self.directory)
        if len(view) or view.in_flight():
            self.fail("bad", "the queue is not empty after the final drain")
        self.final_drain = len(final)

    def summary(self, final=True):
        phases = ", ".join("%s=%d" % (k, self.phases[k]) for k in sorted(self.phases))
        return ("%s: kills=%d (producer %d, consumer %d; %d aimed at compaction) "
                "kills_inside_compaction=%d (by phase: %s) checkpoints_begun=%d acked_puts=%d "
                "acked_acks=%d nacks=%d "
                "abandons=%d queue_full=%d redeliveries=%d final_drain=%d lost=%d "
                "redelivered_acked=%d order_violations=%d other_errors=%d open_errors=%d (%.1fs)" % (
                    self.name, sum(self.kills.values()), self.kills["producer"],
                    self.kills["consumer"], self.aimed, self.compaction_kills, phases, self.checkpoints,
                    self.puts, self.acks, self.nacks, self.abandons, self.fulls,
                    self.redeliveries, self.final_drain if final else -1, self.lost, self.redelivered_acked,
                    self.order_violations, self.bad, len(self.open_errors),
                    time.monotonic() - self.started))

    def assert_clean(self):
        problems = self.errors + self.open_errors[:10]
        assert not problems, "%s:\n%s" % (self.summary(), "\n".join(problems))


KILLS_EACH = reliability.pick(ci=200, long=1000)   # per process
MIN_COMPACTION_KILLS = 100   # kills (of either process) inside compact()


def _campaign(checker, rng, side_by_side):
    if side_by_side:
        for _ in range(KILLS_EACH):
            checker.run(rng, producer=True, consumer=True, pause=1.0)
    else:
        # Alone, a worker need not wait for the other: no sleeps.
        for _ in range(KILLS_EACH):
            checker.run(rng, producer=True, consumer=False, pause=0.0)
            checker.run(rng, producer=False, consumer=True, pause=0.0)
    checker.finish()
    print("\nminiqueue crash test " + checker.summary())
    phases = ", ".join("%s %d" % (k, checker.phases[k]) for k in sorted(checker.phases))
    reliability.record(
        suite="sigkill", brick="miniqueue", fs="posix",
        config="producer and consumer %s, max_bytes=%d compact_bytes=%d" % (
            "side by side" if side_by_side else "taking turns", MAX_BYTES, COMPACT_BYTES),
        cut_points=sum(checker.kills.values()), seeds=1, checks=sum(checker.kills.values()),
        acked_ops=checker.puts + checker.acks, acked_lost=checker.lost,
        violations=(checker.redelivered_acked + checker.order_violations + checker.bad +
                    len(checker.open_errors)),
        seconds=round(time.monotonic() - checker.started, 2),
        notes="%d kills inside compaction (%d aimed), %d checkpoints begun, %d redeliveries, "
              "%d nacks, %d queue full; kills by phase: %s" % (
                  checker.compaction_kills, checker.aimed, checker.checkpoints, checker.redeliveries,
                  checker.nacks, checker.fulls, phases))
    checker.assert_clean()
    assert checker.kills["producer"] >= KILLS_EACH and checker.kills["consumer"] >= KILLS_EACH
    assert checker.acks > 0 and checker.puts > 0
    assert checker.compaction_kills >= MIN_COMPACTION_KILLS, (
        "only %d kills landed inside compact()" % checker.compaction_kills)


def test_sigkill_producer_and_consumer_taking_turns(tmp_path):
    _campaign(Checker(tmp_path, "turns"), random.Random(20240608), side_by_side=False)


def test_sigkill_producer_and_consumer_side_by_side(tmp_path):
    _campaign(Checker(tmp_path, "side-by-side"), random.Random(20240609), side_by_side=True)
