# SIGKILL crash test for miniqueue's limits (CPython only): max_deliveries and
# on_full="drop_oldest", which tests/test_crash_miniqueue.py never opens the queue with.
# The same workers (tests/crash/queue_producer.py, queue_consumer.py, given LIMITS) take
# turns: the producer alone until it is killed, then the consumer, and so on. The
# consumer nacks often (messages reach max_deliveries), moves messages to the dead
# letters (dead_letter), purges them, and puts a message now and then while it holds
# one in flight; every put may drop the oldest ready messages.
#
# Taking turns, the test knows the queue each worker starts from (the one it found
# after the last kill), so it replays each worker's log on a model of the queue
# (Model: per message number its deliveries and status, and the drop counter) and
# checks every answer, then checks the queue a restart finds against the states the
# model passed through since the last durable point (FORMAT.md 5.2):
#
# - drops: each put drops exactly as many messages as the log says (q.dropped before
#   and after), and those are the oldest ready ones (never one in flight or dead, never
#   one put after a ready one that stays): a put that the model says must drop a
#   different count, or a queue after the kill that kept an older ready message and
#   lost a newer one, fails; inspect()'s dropped counter matches;
# - no acknowledged put is lost, other than by those drops;
# - max_deliveries=N: each get delivers the message the model says: the oldest ready
#   one delivered fewer than N times (those before it go to the dead letters); so a
#   dead letter is never delivered again, and across the campaign a message is
#   delivered at most N times plus the gets of it that kills undid (a crash loses the
#   gets not yet durable, durability="puts");
# - counts: deliveries(mid) and dead()'s counts are never above the deliveries the app
#   saw plus the one a kill inside get() may have hidden (journaled, no "got" line),
#   nor below those made durable (the kills undo only gets not yet durable);
# - dead letters: one from dead_letter(), or from a get followed by a durable point
#   (sync, close, a put, another dead_letter, a purge that removed some), is still
#   dead after the kill;
# - the whole queue after the kill equals a state the model passed through at or
#   after the last durable point (a crash loses a suffix of the events, nothing else).
#
# Only taking turns: side by side, the model would not know whose operation came first.
# The summary counts kills_undoing_2_gets: kills that undid two or more gets of one
# message (get, nack, get, nack, all kept in RAM). FORMAT.md 5.2 says a count is low by
# at most one get per crash per message; the bound above counts the gets undone.
import json
import random
import shutil
import time

import harness  # noqa: E402  (tests/crash is on sys.path: conftest.py)
import reliability  # noqa: E402
from queue_producer import message
from test_crash_miniqueue import CONSUMER, PRODUCER, MARKERS, PHASE, CONSUMER_ALONE_DELAY
from miniqueue import MiniQueue  # noqa: E402

pytestmark = harness.needs_sigkill()

MAX_BYTES = 2000          # about 25 messages: the producer alone fills it, and drops
COMPACT_BYTES = 600
MAX_DELIVERIES = 2
LIMITS = "%d,drop_oldest" % MAX_DELIVERIES
PRODUCER_DELAY = (0.0, 0.030)
KILLS_EACH = reliability.pick(ci=150, long=750)   # per process
# Half the kills come, if sooner, 0-1 ms after the 1st or 2nd line of an operation:
# kills at random moments seldom land between a dead_letter() or a get and the next
# write, where a dead letter or a delivery count kept in RAM is lost.
AIMED = 0.5
AIM_DELAY = (0.0, 0.001)
AIM_AT = {"producer": ("ckpt-begin",),
          "consumer": ("got", "got", "deadletter", "deadletter", "nacked", "empty", "ckpt-begin")}
READY, IN_FLIGHT, DEAD = "ready", "in flight", "dead"


def size(n):
    """The bytes message n counts for in max_bytes: its compact JSON (FORMAT.md 5.3)."""
    return len(json.dumps(message(n), separators=(",", ":"), ensure_ascii=False).encode())


class Model:
    """The queue as the app can know it: message number -> [deliveries, status], and the
    drop counter. Ready messages go out in number order (numbers ascend with ids)."""

    def __init__(self, messages=None, dropped=0):
        self.messages = messages or {}
        self.dropped = dropped

    def copy(self):
        return Model(dict((n, list(v)) for n, v in self.messages.items()), self.dropped)

    def state(self):
        """What a restart finds: in flight is ready again."""
        return (tuple(sorted((n, c, DEAD if s == DEAD else READY) for n, (c, s) in self.messages.items())),
                self.dropped)

    def ready(self):
        return sorted(n for n, (c, s) in self.messages.items() if s == READY)

    def get(self):
        """The number get() delivers (those it passes over go dead), or None."""
        for n in self.ready():
            if self.messages[n][0] >= MAX_DELIVERIES:
                self.messages[n][1] = DEAD
                continue
            self.messages[n] = [self.messages[n][0] + 1, IN_FLIGHT]
            return n
        return None

    def put(self, numbers):
        """The numbers put_many(numbers) drops, oldest ready first, or None for QueueFull."""
        need = sum(size(n) for n in numbers)
        live = sum(size(n) for n in self.messages)
        if need > MAX_BYTES:
            return None
        drops = []
        for n in self.ready():
            if live + need <= MAX_BYTES:
                break
            drops.append(n)
            live -= size(n)
        if live + need > MAX_BYTES:
            return None
        for n in drops:
            del self.messages[n]
        self.dropped += len(drops)
        for n in numbers:
            self.messages[n] = [0, READY]
        return drops

    def purge(self):
        dead = [n for n, (c, s) in self.messages.items() if s == DEAD]
        for n in dead:
            del self.messages[n]
        return len(dead)


class LimitsChecker:
    def __init__(self, tmp_path, name):
        self.directory = str(tmp_path / name)
        self.copy_dir = str(tmp_path / (name + "-copy"))
        self.tmp_path = tmp_path
        self.name = name
        self.model = Model()
        self.n_of = {}           # id -> message number
        self.id_of = {}
        self.next_counter = 0
        self.got = {}            # number -> deliveries the app saw ("got"), over the campaign
        self.undone = {}         # number -> deliveries that kills undid (not durable)
        self.kills = {"producer": 0, "consumer": 0}
        self.phases = {}
        self.counts = dict.fromkeys(("puts", "drops", "fulls", "gets", "acks", "nacks", "dead_letters",
                                     "went_dead", "purged", "undone_gets", "kills_undoing_2_gets",
                                     "hidden", "deaths_reverted", "aimed"), 0)
        self.violations = dict.fromkeys(("lost", "drop", "over_delivered", "dead_redelivered",
                                         "over_counted", "count_lost", "dead_lost", "inconsistent", "bad"), 0)
        self.errors = []
        self.started = time.monotonic()

    def fail(self, kind, text):
        self.violations[kind] += 1
        if len(self.errors) < 20:
            self.errors.append("%s: %s (kill %d of %s)" % (kind, text, sum(self.kills.values()), self.directory))

    def run(self, rng, producer):
        who = "producer" if producer else "consumer"
        if producer:
            args = [self.directory, rng.randrange(1 << 30), self.next_counter, MAX_BYTES, COMPACT_BYTES, 0.0,
                    LIMITS]
            delay = rng.uniform(*PRODUCER_DELAY)
        else:
            args = [self.directory, rng.randrange(1 << 30), MAX_BYTES, COMPACT_BYTES, 0.0, LIMITS,
                    self.next_counter]
            delay = rng.uniform(*CONSUMER_ALONE_DELAY)
        aim = None
        if rng.random() < AIMED:
            # Right after an operation returned: before the events it kept in RAM are written.
            aim = (rng.choice(AIM_AT[who]), rng.randint(1, 2), rng.uniform(*AIM_DELAY))
            self.counts["aimed"] += 1
        child = harness.Child(PRODUCER if producer else CONSUMER, args,
                              str(self.tmp_path / (who + ".stderr")), delay, aim)
        lines = harness.run_and_kill([child])[0]
        self.kills[who] += 1
        key = "%s/%s" % (who, PHASE[harness.phase_at_kill(lines, MARKERS)])
        self.phases[key] = self.phases.get(key, 0) + 1
        for line in lines:
            if line.startswith("open-error"):
                self.fail("bad", "%s: %s" % (who, line))
        try:
            self.check(lines)
        except AssertionError:
            raise
        except Exception as exc:
            raise AssertionError("after kill %d (%s), recovery raised %s: %s\nlast lines: %r\n%s" % (
                sum(self.kills.values()), who, type(exc).__name__, exc, lines[-8:],
                "\n".join(self.errors))) from exc

    # -- the log, replayed on the model

    def _bind(self, mid, n):
        if self.n_of.get(mid, n) != n or self.id_of.get(n, mid) != mid:
            self.fail("bad", "id %d holds message %d, but was %r / message %d was id %r" % (
                mid, n, self.n_of.get(mid), n, self.id_of.get(n)))
        self.n_of[mid] = n
        self.id_of[n] = mid

    def replay(self, lines):
        """Apply the log to the model; return (states since the last durable point, the
        states an operation cut by the kill may have left, the last state)."""
        m = self.model
        states = [m.state()]
        pending = None           # [n, ...] of a put with no answer yet
        in_hand = None
        self.reached = {}        # number -> its deliveries after its last get in this run
        for line in lines:
            words = line.split()
            kind = words[0]
            if kind == "try":
                n, k = int(words[1]), int(words[2])
                if n < self.next_counter:
                    self.fail("bad", "message number %d reused" % n)
                pending = list(range(n, n + k))
                self.next_counter = n + k
                continue
            if kind == "full":
                if m.copy().put(pending) is not None:
                    self.fail("drop", "put of %r raised QueueFull, but dropping the oldest ready makes room" % pending)
                self.counts["fulls"] += 1
                pending = None
                continue
            if kind == "put":
                dropped = int(words[-1])
                ids = [int(w) for w in words[1:-3]]
                expect = m.put(pending)
                if expect is None:
                    self.fail("drop", "put of %r returned, the model says QueueFull" % pending)
                    for n in pending:
                        m.messages[n] = [0, READY]
                elif len(expect) != dropped:
                    self.fail("drop", "put of %r dropped %d, the oldest ready that make room are %r" % (
                        pending, dropped, expect))
                for mid, n in zip(ids, pending):
                    self._bind(mid, n)
                self.counts["puts"] += len(pending)
                self.counts["drops"] += dropped
                pending = None
                states = [m.state()]  # a put is synced, with every event before it
                continue
            if kind == "got":
                mid, n, ok = int(words[1]), int(words[2]), words[3] == "1"
                if not ok:
                    self.fail("bad", "message %d delivered with the wrong content (n=%d)" % (mid, n))
                self._bind(mid, n)
                before = m.copy()
                expect = m.get()
                self.counts["went_dead"] += sum(1 for k, (c, s) in m.messages.items()
                                                if s == DEAD and before.messages[k][1] != DEAD)
                if expect != n:
                    was = before.messages.get(n)
                    if was is None:
                        self.fail("bad", "got message %d, which is not in the queue" % n)
                    elif was[1] == DEAD:
                        self.fail("dead_redelivered", "got message %d, a dead letter" % n)
                    elif was[0] >= MAX_DELIVERIES:
                        self.fail("over_delivered", "got message %d, delivered %d times already (max %d)" % (
                            n, was[0], MAX_DELIVERIES))
                    else:
                        self.fail("bad", "got message %d, the model says %r" % (n, expect))
                    self.model = m = before
                    m.messages[n] = [(was or [0])[0] + 1, IN_FLIGHT]
                self.got[n] = self.got.get(n, 0) + 1
                self.reached[n] = m.messages[n][0]
                if self.got[n] > MAX_DELIVERIES + self.undone.get(n, 0):
                    self.fail("over_delivered", "message %d delivered %d times: max_deliveries=%d, and kills "
                              "undid %d of its gets" % (n, self.got[n], MAX_DELIVERIES, self.undone.get(n, 0)))
                self.counts["gets"] += 1
                in_hand = n
            elif kind in ("acked", "nacked", "deadletter"):
                n = self.n_of[int(words[1])]
                assert n == in_hand, line
                if kind == "acked":
                    del m.messages[n]
                    self.counts["acks"] += 1
                else:
                    m.messages[n][1] = READY if kind == "nacked" else DEAD
                    self.counts["nacks" if kind == "nacked" else "dead_letters"] += 1
                in_hand = None
                if kind == "deadletter":
                    states = []  # synced, with every event before it
            elif kind == "abandon":
                in_hand = None
            elif kind == "empty":  # get() returned None: it may have sent some to the dead letters
                before = m.copy()
                expect = m.get()
                if expect is not None:
                    self.fail("bad", "get() found nothing, the model says %d is ready" % expect)
                    self.model = m = before
                self.counts["went_dead"] += sum(1 for k, (c, s) in m.messages.items()
                                                if s == DEAD and before.messages[k][1] != DEAD)
            elif kind == "purged":
                k = m.purge()
                if k != int(words[1]):
                    self.fail("bad", "purge_dead() removed %s, the model has %d dead letters" % (words[1], k))
                self.counts["purged"] += k
                if k:
                    states = []  # synced, with every event before it (a purge of none writes nothing)
            elif kind in ("synced", "closed"):
                states = []
            elif kind == "open":
                for v in m.messages.values():
                    if v[1] == IN_FLIGHT:
                        v[1] = READY
            else:
                continue
            states.append(m.state())
        # The call the kill cut may have changed the queue.
        cut = []
        for step in ("get", "purge", "put", "ack", "nack", "dead"):
            after = m.copy()
            if step == "get" and in_hand is None:
                after.get()
            elif step == "purge" and in_hand is None:
                after.purge()
            elif step == "put" and pending is not None:
                if after.put(pending) is None:
                    continue
            elif step in ("ack", "nack", "dead") and in_hand is not None:
                if step == "ack":
                    del after.messages[in_hand]
                else:
                    after.messages[in_hand][1] = READY if step == "nack" else DEAD
            else:
                continue
            cut.append(after.state())
        return states, cut, m.state()

    # -- the queue a restart finds

    def recovered(self):
        view = MiniQueue.inspect(self.directory)  # read-only
        q = MiniQueue.open(self.directory, max_bytes=MAX_BYTES, on_full="drop_oldest",
                           max_deliveries=MAX_DELIVERIES)
        try:
            if q.in_flight():
                self.fail("bad", "a reopened queue has %d messages in flight" % q.in_flight())
            reopened = (len(q), len(q.dead()), q.dropped)
        finally:
            q.close()
        shutil.rmtree(self.copy_dir, ignore_errors=True)
        shutil.copytree(self.directory, self.copy_dir)
        drained = []
        c = MiniQueue.open(self.copy_dir, max_bytes=MAX_BYTES)  # no max_deliveries: every ready one
        try:
            for mid, msg in c:
                drained.append((mid, msg))
                c.ack(mid)
        finally:
            c.close()
            shutil.rmtree(self.copy_dir, ignore_errors=True)
        if [mid for mid, msg in drained] != sorted(set(mid for mid, msg in drained)):
            self.fail("bad", "a drain delivered ids out of order: %r" % [mid for mid, msg in drained])
        messages = {}
        for mid, msg, count, status in ([(mid, msg, view.deliveries(mid), READY) for mid, msg in drained] +
                                        [(mid, msg, count, DEAD) for mid, msg, count in view.dead()]):
            n = msg.get("n") if isinstance(msg, dict) else None
            if not isinstance(n, int) or msg != message(n):
                self.fail("bad", "message %d has the wrong content: %r" % (mid, msg))
                continue
            self._bind(mid, n)
            messages[n] = [count, status]
        if view.in_flight() + len(view) != len(drained) or reopened[1] != len(view.dead()) or \
                reopened[2] != view.dropped:
            self.fail("bad", "inspect() and open() disagree: %r, %d + %d ready, %d dead, %d dropped" % (
                reopened, len(view), view.in_flight(), len(view.dead()), view.dropped))
        return Model(messages, view.dropped)

    def check(self, lines):
        states, cut, last = self.replay(lines)
        got = self.recovered()
        found = got.state()
        candidates = states + cut
        # Named checks first, each against every state the queue may rightly be in.
        for n in sorted(set(n for n, c, s in candidates[0][0])):
            where = [dict((k, (c, s)) for k, c, s in st[0]).get(n) for st in candidates]
            now = got.messages.get(n)
            if all(w is not None for w in where) and now is None:
                self.fail("lost", "message %d (id %r) is gone: no drop, ack or purge of it can have landed" % (
                    n, self.id_of.get(n)))
            elif now is not None and now[1] != DEAD and all(w is None or w[1] == DEAD for w in where):
                self.fail("dead_lost", "message %d (id %r) was a durable dead letter, and is ready again" % (
                    n, self.id_of.get(n)))
        for n, (count, status) in got.messages.items():
            could = [c for st in candidates for k, c, s in st[0] if k == n]
            if not could:
                self.fail("bad", "message %d (id %r) is in the queue, where no state has it" % (n, self.id_of.get(n)))
            elif count > max(could):
                self.fail("over_counted", "message %d: %d deliveries counted, at most %d happened" % (
                    n, count, max(could)))
            elif count < min(could):
                self.fail("count_lost", "message %d: %d deliveries counted, %d were durable" % (
                    n, count, min(could)))
        if found[1] not in [st[1] for st in candidates]:
            self.fail("drop", "the queue counts %d drops, the model %r" % (found[1], [st[1] for st in candidates]))
        if found not in candidates:
            self.fail("inconsistent", "the queue after the kill is no state at or after the last durable point:"
                      "\n  got   %r\n  could %r" % (found, candidates[:3] + ["..."] + candidates[-3:]))
        # Deliveries the kill undid (gets not yet durable; of an acked message too, if
        # the ack was not durable either), and deaths it reverted.
        end = dict((n, (c, s)) for n, c, s in last[0])
        worst = 0
        for n, (count, status) in got.messages.items():
            lost = self.reached.get(n, count) - count
            if lost > 0:
                self.undone[n] = self.undone.get(n, 0) + lost
                self.counts["undone_gets"] += lost
                worst = max(worst, lost)
            elif n in end and count > end[n][0]:
                self.counts["hidden"] += 1
            if n in end and end[n][1] == DEAD and status != DEAD:
                self.counts["deaths_reverted"] += 1
        if worst >= 2:
            self.counts["kills_undoing_2_gets"] += 1
        self.model = got

    def summary(self):
        return "%s: kills=%d %r phases=%r %r violations=%r (%.1fs)" % (
            self.name, sum(self.kills.values()), self.kills, self.phases, self.counts, self.violations,
            time.monotonic() - self.started)


def test_sigkill_max_deliveries_and_drop_oldest_taking_turns(tmp_path):
    checker = LimitsChecker(tmp_path, "limits")
    rng = random.Random(20261205)
    for _ in range(KILLS_EACH):
        checker.run(rng, producer=True)
        checker.run(rng, producer=False)
    print("\nminiqueue limits crash test " + checker.summary())
    c = checker.counts
    reliability.record(
        suite="sigkill", brick="miniqueue", fs="posix",
        config="producer and consumer taking turns, max_deliveries=%d on_full=drop_oldest max_bytes=%d "
               "compact_bytes=%d" % (MAX_DELIVERIES, MAX_BYTES, COMPACT_BYTES),
        cut_points=sum(checker.kills.values()), seeds=1, checks=sum(checker.kills.values()),
        acked_ops=c["puts"] + c["acks"] + c["dead_letters"] + c["purged"], acked_lost=checker.violations["lost"],
        violations=sum(checker.violations.values()) - checker.violations["lost"],
        seconds=round(time.monotonic() - checker.started, 2),
        notes="%d drops, %d went dead in a get, %d dead_letter, %d purged, %d gets undone by kills, "
              "%d deaths reverted by kills" % (c["drops"], c["went_dead"], c["dead_letters"], c["purged"],
                                                c["undone_gets"], c["deaths_reverted"]))
    assert not checker.errors, "%s:\n%s" % (checker.summary(), "\n".join(checker.errors))
    # The campaign reached what it is for.
    for name, least in (("drops", 20), ("went_dead", 20), ("dead_letters", 20), ("purged", 10),
                        ("undone_gets", 4)):
        assert c[name] >= least, "only %d %s: %s" % (c[name], name, checker.summary())
