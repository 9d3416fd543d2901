"""miniqueue: a durable local FIFO queue with acknowledgement and redelivery.

MiniQueue.open(directory) gives a queue: put (durable when it returns), get, ack,
nack, dead letters, a bounded size. Its journal of events and its checkpoints are
specified in FORMAT.md, section 5.
"""
#
# Every change is an event in a segmented journal (minilog.SegmentedLog). A
# message's id is the seq of its "put" event, which compaction never changes.
# Space comes back through checkpoints: a new segment that restates the live
# messages, ended by a "ckpt_end" marker; older segments are removed only once
# that marker is durable. The messages in RAM and their replay are minimessages';
# waiting for one (get(timeout), aget, retry delays) is miniwait's, imported at the
# first wait or delay: an app that never waits does not hold it in RAM.
import minishim as shim
from ministore import MiniError, check_value, encode_json, is_int, settle, FLOAT_TEXT_INEXACT
# QueueCorrupt, CompactionGap and the statuses stay importable from here.
from minilog import LogBrick, SegmentedLog, CompactionGap, read_segments  # noqa: F401
from minimessages import Messages, QueueCorrupt, UnknownMessage, READY, IN_FLIGHT, DEAD  # noqa: F401

# Journal bytes around a message in a checkpoint line: 64 on files (an estimate: how
# much a checkpoint takes); at most 128 on a flash region, where a line must fit a sector
# (FORMAT.md 6.5: 108 with 19-digit seq and id, a batch of 32, 10**10 deliveries).
MESSAGE_OVERHEAD = 64


def _check_seconds(name, value, high=shim.MAX_DELAY):
    """`value` as a number of seconds in 0..high, or ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
        raise ValueError("%s must be a number of seconds from 0 to %d, not %r" % (name, high, value))
    return value


class QueueFull(MiniError):
    """put() would take the queue past max_bytes and on_full is "reject". Nothing was written."""


class MiniQueue(Messages, LogBrick):
    """Use MiniQueue.open()."""

    def __init__(self, directory="", region=None):
        Messages.__init__(self, directory, region)
        self._log = None
        self.max_bytes = 0
        self.on_full = "reject"
        self.max_deliveries = None
        self.compact_bytes = 0
        self.durability = "puts"
        self.unsynced_events = 32
        self._deferred = []     # [[encoded event, ...] of one call] not yet written (durability="puts")
        self._deferred_events = 0
        self.retry_delay = 0
        self.retry_backoff = 2.0
        self.retry_max = 600
        self._delays = None  # a miniwait.Delays once a nack has a delay (RAM only)
        self._wake = None    # a miniwait.Wakeup once something waits: get(timeout), aget()
        self._group = False  # puts share syncs across threads (files, sync="always")
        self.last_seq = 0

    @staticmethod
    def open(directory, max_bytes=64 * 1024, on_full="reject", max_deliveries=None,
             sync: "str | int" = "always", compact_bytes=None, region=None, durability="puts",
             unsynced_events=32, retry_delay=0, retry_backoff=2.0, retry_max=600):
        """Open (creating if needed) the queue in `directory`.

        max_bytes bounds the live messages (ready, in flight and dead, as stored
        JSON). on_full: "reject" (QueueFull) or "drop_oldest" (a ring buffer; see
        `dropped`). max_deliveries: after that many deliveries a message goes to
        dead() instead of being delivered again. compact_bytes: journal bytes
        written since the last checkpoint that trigger the next (default max_bytes).
        region: keep the journal on this raw flash region (miniflash, FORMAT.md 6) instead of
        in journal files; a put that would leave it no room for a checkpoint of the
        messages (at most (sectors - 4) // 2 sectors) raises QueueFull (FORMAT.md 6.5).
        durability: "puts" (the default) syncs puts, purges (under `sync`) and checkpoints;
        a get, ack, nack or dead letter is kept in RAM and written, and synced, with the
        next put, sync(), close() or checkpoint, or once `unsynced_events` of them wait
        (an ack replaces its get if that is still in RAM).
        A crash can then only redeliver messages whose ack was not durable yet, and count
        fewer deliveries (FORMAT.md 5.2). "all": every event is synced (under `sync`).
        retry_delay, retry_backoff, retry_max (seconds): a nack() without a delay holds the
        message back retry_delay * retry_backoff ** (deliveries - 1) seconds, at most
        retry_max (the default retry_delay=0: none). Delays live in RAM (see nack()).
        """
        if durability not in ("puts", "all"):
            raise ValueError('durability must be "puts" or "all"')
        if not is_int(unsynced_events) or unsynced_events < 1:
            raise ValueError("unsynced_events must be an int >= 1")
        if on_full not in ("reject", "drop_oldest"):
            raise ValueError('on_full must be "reject" or "drop_oldest"')
        for name, value in (("max_bytes", 0 if max_bytes is None else max_bytes),  # None refused too
                            ("max_deliveries", max_deliveries), ("compact_bytes", compact_bytes)):
            if value is not None and (not is_int(value) or value < 1):
                raise ValueError("%s must be an int >= 1" % name)
        _check_seconds("retry_delay", retry_delay)
        _check_seconds("retry_max", retry_max)
        backoff_ok = isinstance(retry_backoff, (int, float)) and not isinstance(retry_backoff, bool)
        if not backoff_ok or not 1 <= retry_backoff <= 100:
            raise ValueError("retry_backoff must be a number from 1 to 100, not %r" % (retry_backoff,))
        q = MiniQueue._replayer(directory, region)
        q.max_bytes = max_bytes
        q.on_full = on_full
        q.max_deliveries = max_deliveries
        q.compact_bytes = compact_bytes or max_bytes
        q.durability = durability
        q.unsynced_events = unsynced_events
        q.retry_delay = retry_delay
        q.retry_backoff = retry_backoff
        q.retry_max = retry_max
        if region is not None:
            from miniflashlog import RegionLog
            log = RegionLog.open(q.directory, region, start=q._find_start, apply=q._replay, sync=sync)
        else:
            log = SegmentedLog.open(q.directory, start=q._find_start, apply=q._replay, sync=sync)
        try:  # from here, an error lets the log go (MicroPython has no finalizer to)
            q._log = log  # pyright: ignore[reportAttributeAccessIssue] (a RegionLog has what the queue uses)
            q._group = region is None and log.store.sync_every is None  # pyright: ignore[reportAttributeAccessIssue] ("always" or 1)
            q._finish_replay()
            if region is not None:
                log.compact(q._covered)  # a region forgets at each boot what its checkpoints covered
        except BaseException:
            log.close()
            raise
        # Where the checkpoint in the active segment ended is not stored; a generous
        # estimate from the live messages keeps the trigger from firing at once and,
        # unlike a count reset at each boot, keeps the segment bounded across reboots.
        q._ckpt_size = min(log.active_bytes(), q._ix.size + MESSAGE_OVERHEAD * (len(q._ix) + 1))
        if region is not None:
            # Each power cut in a write costs the rest of its sector (FORMAT.md 6.4): with
            # little traffic no compaction came due, and the region could fill with
            # sectors nothing released, a checkpoint then having no sector to go to. Only
            # when the checkpoint fits the spare sectors: a region full of live messages
            # still opens, so that they can be read and acked.
            flash = log.store  # pyright: ignore[reportAttributeAccessIssue] (a FlashStore)
            spare = flash._spare()  # pyright: ignore[reportAttributeAccessIssue]
            if spare <= 2 and log.keeps_room(q._ix, (), (), 0, False):  # pyright: ignore[reportAttributeAccessIssue]
                q._compact()
        return q

    @staticmethod
    def inspect(directory, region=None):
        """Read-only (no lock, no writes): the queue as a restart would find it.

        len(), in_flight() (as it was: a restart would make them ready), dead(),
        dropped, deliveries() and live_bytes() work on the result; changing it does not.
        """
        q = MiniQueue._replayer(directory, region)
        if region is not None:
            from miniflashlog import read_region
            q.last_seq = read_region(region, q._find_start(), q._replay)
        else:
            q.last_seq = read_segments(q.directory, q._find_start(), q._replay)
        q._finish_replay(redeliver=False)
        return q

    @staticmethod
    def _replayer(directory, region=None):
        return MiniQueue(shim.fspath(directory), region)

    # -- the queue

    def __len__(self):
        """How many messages are ready now (delayed ones not yet: see delayed())."""
        with self._lock:
            self._promote_due()
            return self._ix.fresh + len(self._ix.back)

    def delayed(self):
        """How many nacked messages wait for their retry delay to pass."""
        with self._lock:
            return len(self._delays) if self._delays is not None else 0

    def __repr__(self):
        delayed = self.delayed()
        with self._lock:
            self._promote_due()
            ix = self._ix
            return "<MiniQueue %r ready=%d%s in_flight=%d dead=%d dropped=%d live_bytes=%d%s>" % (
                self.directory, ix.fresh + len(ix.back), " delayed=%d" % delayed if delayed else "",
                self._count(IN_FLIGHT), self._count(DEAD), self.dropped, ix.size,
                "" if self._log is not None else " (not open: closed, or from inspect())")

    def put(self, message):
        """Add a message; durable (under sync="always") when its id is returned."""
        check_value(message, 2)  # encode_json(message, 2) without its calls: the hot path
        body = shim.dumps(message).encode()
        if FLOAT_TEXT_INEXACT:
            body = settle(body)
        return self._put_bodies([body], len(body))[0]

    def put_many(self, messages):
        """Add messages as one atomic batch with one sync; return their ids."""
        if isinstance(messages, (str, bytes, bytearray, dict)):  # one value: iterated, it would be its parts
            raise TypeError("a batch is a list, not a %s (one value)" % type(messages).__name__)
        bodies = []
        need = 0
        for message in messages:
            # Two levels down in a checkpoint: {"ckpt": [id, M, ...]}. settle(): what a restart
            # replays is what get() delivers, also on MicroPython (FORMAT.md 1). As put():
            # encode_json(message, 2) without its call, settle() only where it can change it.
            check_value(message, 2)
            body = shim.dumps(message).encode()
            if FLOAT_TEXT_INEXACT:
                body = settle(body)
            bodies.append(body)
            need += len(body)
        return self._put_bodies(bodies, need)

    def _put_bodies(self, bodies, need):
        """put() and put_many(): `bodies` (encoded and settled, `need` bytes in all) as one
        atomic batch; their ids."""
        if need > self.max_bytes:
            # No retry can help, so this is not QueueFull.
            raise ValueError("%s of %d bytes can never fit max_bytes=%d" % (
                "a message" if len(bodies) == 1 else "%d messages" % len(bodies), need, self.max_bytes))
        self._lock.acquire()  # not `with`: on CPython 3.11 this takes half its time (75 vs 146 ns)
        try:
            log = self._log
            if log is None:
                log = self._open_log()  # raises ClosedError
            if not bodies:
                return []
            if self._region is not None:
                log.check_fits(bodies, 128)  # pyright: ignore[reportAttributeAccessIssue] (a RegionLog)
            group = self._group
            ix = self._ix
            events = []
            drops = ()
            region = self._region is not None
            tight = region and not log.keeps_room(ix, bodies, (), 2, True)  # pyright: ignore[reportAttributeAccessIssue] (a RegionLog)
            # What the journal holds besides the messages may be in the way: a compaction, if
            # a sector of events came since the last (else one per refused put) and it fits.
            if tight and log.active_bytes() - self._ckpt_size >= log.store.region.sector_size - 192 and (  # pyright: ignore[reportAttributeAccessIssue]
                    log.keeps_room(ix, (), (), 0, False)):  # pyright: ignore[reportAttributeAccessIssue]
                self._compact()
                tight = not log.keeps_room(ix, bodies, (), 2, True)  # pyright: ignore[reportAttributeAccessIssue]
            if tight or ix.size + need > self.max_bytes:
                if self.on_full == "reject":
                    raise QueueFull("queue %s is full: %d + %d bytes > max_bytes=%d%s" % (
                        self.directory, ix.size, need, self.max_bytes, ", or its region's room" * tight))
                freed = 0
                drops = []
                for i in ix.ready_in_order():
                    if ix.size - freed + need <= self.max_bytes and not (
                            region and not log.keeps_room(ix, bodies, drops, 2, True)):  # pyright: ignore[reportAttributeAccessIssue]
                        break
                    drops.append(ix.id_at(i))
                    freed += len(ix.body_at(i))
                if ix.size - freed + need > self.max_bytes or (
                        region and not log.keeps_room(ix, bodies, drops, 2, True)):  # pyright: ignore[reportAttributeAccessIssue]
                    raise QueueFull("queue %s is full of in-flight, delayed and dead messages" % self.directory)
                events = [b'{"drop":%d}' % mid for mid in drops]
            # (log.store.seq: log.seq is a property, which CPython 3.11 calls through C)
            first = log.store.seq + self._deferred_events + len(events) + 1  # deferred events go first
            # Group commit (files, sync="always"): written now, synced below, outside the lock,
            # in one sync shared with the threads that put meanwhile. get() delivers none
            # of these before that sync (_get_now), so no id is seen that a crash could reuse.
            for body in bodies:
                events.append(b'{"put":%s}' % body)
            if self._region is not None:  # refused here, not by the write: a failed write closes the queue
                try:
                    log.check_fits(events)  # pyright: ignore[reportAttributeAccessIssue] (a RegionLog)
                except ValueError:
                    if not drops:
                        raise
                    # The drops go in the put's batch (a crash must not drop without the put):
                    # with fewer of them, once some are acked, it may fit. Not "never".
                    raise QueueFull("queue %s is full: the put and the %d drops it needs would not fit in a "
                                    "sector of its region" % (self.directory, len(drops)))
            self._write(events, sync=not group, waits=group)
            store = log.store if group else None  # compaction may start a new one: this one holds the puts
            try:
                for mid in drops:
                    ix.remove(ix.find(mid))
                    self.dropped += 1
                ids = []
                mid = first
                for body in bodies:
                    ix.add(mid, body, 0, READY)
                    ids.append(mid)
                    mid += 1
                if self._region is not None:
                    self._maybe_compact()
                elif log.active_bytes() - self._ckpt_size >= self.compact_bytes:  # _maybe_compact(), inline
                    self._compact()
            except BaseException:
                # Written, but not all in RAM (a board's MemoryError, Ctrl-C, a failed
                # compaction): only a reopen is trusted. The puts may be durable.
                self._close_quietly()
                raise
            if store is None:
                self._notify()
                return ids
        finally:
            self._lock.release()
        try:
            store.wait_durable(ids[-1])  # pyright: ignore[reportAttributeAccessIssue] (group: a MiniStore)
        except Exception:
            with self._lock:
                self._close_quietly()  # the puts may be lost: only a reopen is trusted
            raise
        # Under the lock: a get() looks and starts waiting (its first wait makes _wake) in
        # one hold of it, so it either saw these puts durable or is waiting by now. Looked
        # at without the lock, a get() could look before the sync ended, start waiting
        # after this look, and sleep out its whole timeout.
        with self._lock:
            wake = self._wake
            if wake is not None and wake.waiting():
                wake.notify()  # now get() may deliver them
        return ids

    def get(self, timeout=None):
        """Deliver the oldest ready message as (id, message), or None when there is none.

        timeout=None (the default): never blocks. timeout=seconds: waits until a message
        is ready, or returns None once the timeout has passed. A put() or nack() from
        another thread wakes it at once on CPython, within 16 ms on MicroPython (whose
        locks have no timed wait); close() wakes it with ClosedError. On a port without
        threads nothing else runs meanwhile: it sleeps until a delayed message is due or
        the timeout has passed. asyncio apps: aget().
        """
        if timeout is not None:
            _check_seconds("timeout", timeout)
            from miniwait import blocking_get  # lazy: only an app that waits needs it
            return blocking_get(self, timeout)
        self._lock.acquire()
        try:
            return self._get_now()
        finally:
            self._lock.release()

    def aget(self, timeout=None):
        """`await q.aget()`: get() for asyncio tasks. Waits, without blocking the event
        loop, until a message is ready (woken by a put() or nack() of another task of the
        same loop; on CPython also of another thread), or returns None once `timeout`
        seconds have passed (None: no limit). No background task. asyncio is imported only
        when this is called: the module imports on ports without it."""
        if timeout is not None:
            _check_seconds("timeout", timeout)
        from miniwait import aget  # lazy: only an app that waits needs it
        return aget(self, timeout)

    def _get_now(self):
        log = self._log
        if log is None:
            log = self._open_log()  # raises ClosedError
        if self._delays is not None:
            self._promote_due()
        # Group commit: a put is delivered only once it is durable (put_many).
        limit = log.store.durable_seq if self._group else None  # (group: files, so a MiniStore's)
        # The dead letters it passes over and the delivery: one atomic batch.
        ix = self._ix
        events = []
        dead = None
        found = -1
        message = None
        try:
            while True:
                i = ix.head()
                if i < 0:
                    break
                mid = ix.id_at(i)
                if limit is not None and mid > limit:
                    break  # written, not yet synced: its put has not returned
                ix.take(i)
                if self.max_deliveries is not None and ix.counts.get(mid, 0) >= self.max_deliveries:
                    events.append(b'{"dead":%d}' % mid)
                    if dead is None:
                        dead = []
                    dead.append(i)
                    if len(events) == 16:  # a batch a 2 KiB sector holds, with 19-digit ids: the others in the next
                        self._write(events, defer=True)
                        events = []
                    continue
                events.append(b'{"get":%d}' % mid)
                found = i
                # Parsed and counted before the get is written: a MemoryError here must
                # not leave a written delivery the app never received.
                message = shim.loads(ix.deliver(found))  # now in flight
                ix.counts[mid] = ix.counts.get(mid, 0) + 1
                break
            if not events and dead is None:
                return None
            written = self._write(events, defer=True) if events else True
        except BaseException:
            self._close_quietly()  # RAM changed (taken, in flight, counted): only a reopen is trusted
            raise
        if dead is not None:
            for i in dead:
                ix.set_status(i, DEAD)
        if written:
            try:
                self._maybe_compact()
            except Exception:
                # _compact closed the queue; its next call raises ClosedError. The get is
                # written, maybe durable: the app gets its message, so that no delivery
                # is counted that it never received (FORMAT.md 5.2).
                pass
        if found < 0:
            return None
        return mid, message

    def ack(self, mid):
        """The message was handled: durable (under sync="always"); it is never delivered again."""
        self._lock.acquire()  # not `with`: on CPython 3.11 this takes half its time (75 vs 146 ns)
        try:
            i = self._in_flight(mid)
            try:
                self._drop_deferred_get(mid)
                written = self._write([b'{"ack":%d}' % mid], defer=True)
                self._ix.remove(i)
                if written:
                    self._maybe_compact()
            except BaseException:
                self._close_quietly()  # written (or deferred), maybe not removed: only a reopen is trusted
                raise
        finally:
            self._lock.release()

    def nack(self, mid, delay=None):
        """Put a delivered message back in its place in the queue, for a later get().

        delay (seconds, 0..86400): get() does not deliver it before that time (get(timeout)
        and aget() wait for it). None: the open()'s retry policy, retry_delay *
        retry_backoff ** (deliveries - 1) capped at retry_max (by default no delay).
        The delay lives in RAM only: after a restart the message is ready at once, as
        at-least-once allows (FORMAT.md 5.2); a board's clock does not survive a reboot.
        The nack is synced before it returns (under `sync`), whatever `durability` says.
        """
        if delay is not None:
            _check_seconds("delay", delay)
        with self._lock:
            i = self._in_flight(mid)
            ix = self._ix
            if delay is None and self.retry_delay:
                from miniwait import backoff  # lazy: only with a retry policy
                delay = backoff(self.retry_delay, self.retry_backoff, self.retry_max, ix.counts.get(mid, 0))
            try:
                # Synced, with the get before it: kept in RAM, a crash after get, nack, get,
                # nack lost both gets, and one crash let a message be delivered twice more
                # than max_deliveries. Now a count is low by at most one get per crash.
                self._write([b'{"nack":%d}' % mid])
                if delay:
                    ix.set_status(i, READY)
                    if self._delays is None:
                        from miniwait import Delays  # lazy: only once a message is held back
                        self._delays = Delays()
                    self._delays.add(mid, delay)
                else:
                    ix.ready_again(i)
                self._notify()
                self._maybe_compact()
            except BaseException:
                self._close_quietly()  # written (or deferred), maybe not ready again: only a reopen is trusted
                raise

    def dead_letter(self, mid):
        """Move a delivered message to the dead letters (dead()) now: it will not be delivered
        again. Synced before it returns, whatever `durability` says: kept in RAM, a crash
        lost it and the message came back ready, with nothing to send it back (no
        max_deliveries)."""
        with self._lock:
            i = self._in_flight(mid)
            try:
                self._write([b'{"dead":%d}' % mid])
                self._ix.set_status(i, DEAD)
                self._maybe_compact()
            except BaseException:
                self._close_quietly()  # only a reopen is trusted
                raise

    def peek(self):
        """The message get() would deliver now, as (id, message), without delivering it, or
        None. It passes over, as get() does, the ready messages that max_deliveries sends
        to the dead letters at their next get()."""
        with self._lock:
            log = self._open_log()
            self._promote_due()
            ix = self._ix
            for i in ix.ready_in_order():
                mid = ix.id_at(i)
                if self._group and mid > log.durable_seq:
                    return None  # as get(): not before its put is durable
                if self.max_deliveries is None or ix.counts.get(mid, 0) < self.max_deliveries:
                    return mid, shim.loads(ix.body_at(i))
            return None

    qsize = __len__  # persist-queue's name for len(q): no function of its own (a board's heap)

    def full(self):
        """True when the live messages fill max_bytes: a put would be refused (on_full="reject")
        or would drop the oldest ("drop_oldest")."""
        with self._lock:
            return self._ix.size >= self.max_bytes

    def __iter__(self):
        """Deliver messages until none is ready, as get() does: ack (or nack) each one."""
        while True:
            item = self.get()
            if item is None:
                return
            yield item

    def purge_dead(self):
        """Remove every dead letter; return how many."""
        with self._lock:
            self._open_log()
            ix = self._ix
            ids = [ix.id_at(i) for i in ix.slots() if ix.status_at(i) == DEAD]
            if ids:
                try:
                    # Atomic batches of 16 (as get()'s dead letters), not deferred.
                    for at in range(0, len(ids), 16):
                        self._write([b'{"purge":%d}' % mid for mid in ids[at:at + 16]])
                        for mid in ids[at:at + 16]:
                            ix.remove(ix.find(mid))
                    self._maybe_compact()
                except BaseException:
                    self._close_quietly()  # written, maybe not all removed: a second purge would be refused
                    raise
            return len(ids)

    def _in_flight(self, mid):
        """The slot of message mid, which must be in flight."""
        if self._log is None:
            self._open_log()  # raises ClosedError
        ix = self._ix
        i = ix.find(mid)
        if i < 0 or ix.status_at(i) != IN_FLIGHT:
            state = "unknown or already acked" if i < 0 else ("dead" if ix.status_at(i) == DEAD else "not delivered")
            raise UnknownMessage("message %r is not in flight (%s)" % (mid, state))
        return i

    def _promote_due(self):
        if self._delays is None:
            return
        ix = self._ix
        for mid in self._delays.pop_due():
            i = ix.find(mid)
            if i >= 0 and ix.status_at(i) == READY:
                ix.ready_again(i)

    def _write(self, bodies, defer=False, sync=True, waits=False):
        """Journal events, encoded (one atomic batch), synced under the store's policy.
        False if they were deferred, not written (the segment did not grow).

        defer=True (a get, ack, nack or dead letter; durability="puts"): the event is
        kept in RAM and written ahead of the next durable write, in the same write() and
        sync, or on its own once `unsynced_events` wait (FORMAT.md 5.2). It is never
        written without a sync after it, so no crash can leave it as a hole with later
        lines intact (a file system may persist unsynced appends out of order).
        Its callers hold the lock and found the queue open: an event kept in RAM needs no
        second look."""
        if defer and self.durability == "puts":
            if self._region is not None:
                # A region's store keeps unsynced records in RAM and programs them in
                # order at its next sync: nothing to hold back here.
                log = self._open_log()
                sync = log.seq + len(bodies) - log.durable_seq >= self.unsynced_events
            else:
                self._deferred.append(bodies)  # one call's events stay one atomic batch
                self._deferred_events += len(bodies)
                if self._deferred_events < self.unsynced_events:
                    return False
                bodies = []
        log = self._log
        if log is None:
            log = self._open_log()  # raises ClosedError (sync() and close() flush through here)
        lead = self._deferred
        if lead:
            self._deferred = []
            self._deferred_events = 0
        try:
            if waits:  # a put that waits for the store's group commit next (put_many)
                log.store.append_encoded(bodies, False, lead, waits=True)  # pyright: ignore[reportCallIssue] (a MiniStore)
            else:
                log.append_encoded(bodies, sync, lead)
        except BaseException:  # an OSError; on a board, a MemoryError
            self._close_quietly()  # memory and journal may now disagree: only a reopen is trusted
            raise
        return True

    def _drop_deferred_get(self, mid):
        """An ack's message was delivered by a get that is still deferred (never written):
        drop that get, so the ack alone is written. An ack needs no get before it (FORMAT.md
        5.2), and a crash before the ack is durable loses both either way, so the journal
        says the same to a restart with fewer bytes: on LittleFS, fewer block copies."""
        deferred = self._deferred
        if deferred:
            get = b'{"get":%d}' % mid
            i = len(deferred)
            while i:  # newest first, without a range object (every ack passes here)
                i -= 1
                if get in deferred[i]:  # the get of this delivery (an earlier one was nacked)
                    if len(deferred[i]) == 1:  # in a batch of its own: after dead letters it stays
                        del deferred[i]
                        self._deferred_events -= 1
                    return

    def _flush_deferred(self):
        if self._deferred:
            self._write([])

    @property
    def seq(self):
        """The seq of the last event, deferred ones included (an id is a put's seq)."""
        log = self._log
        return self._closed_seq if log is None else log.seq + self._deferred_events

    def sync(self):
        """Make every event so far durable: deferred gets and acks included."""
        with self._lock:
            self._flush_deferred()
            self._open_log().sync()

    def close(self):
        """Write and sync what is deferred, then release the directory. Closing twice is fine."""
        with self._lock:
            if self._log is not None:
                try:
                    self._flush_deferred()
                except BaseException:
                    self._close_quietly()
                    raise
                log, self._log = self._log, None
                self._closed_seq = log.seq
                self._delays = None
                self._notify()  # a waiting get() raises ClosedError
                log.close()

    def _close_quietly(self):
        LogBrick._close_quietly(self)
        self._notify()

    def _notify(self):
        if self._wake is not None:
            self._wake.notify()

    # -- space

    def _maybe_compact(self):
        log = self._log  # open: its callers, under the lock, just wrote or deferred an event
        if log is None:
            return
        due = log.active_bytes() - self._ckpt_size >= self.compact_bytes
        if self._region is not None:
            # Also when the region's room runs short, and never a checkpoint that would not
            # fit: a cut one would only take more room (FORMAT.md 6.5).
            due = log.compaction_due(self._ix, due)  # pyright: ignore[reportAttributeAccessIssue] (a RegionLog)
        if due:
            self._compact()

    def compact(self):
        """Write a checkpoint of the live messages in a new segment, then drop the older segments.
        On a region without room for the checkpoint: RegionFull, and nothing is written."""
        with self._lock:
            if self._region is not None and not self._open_log().keeps_room(self._ix, (), (), 0, False):  # pyright: ignore[reportAttributeAccessIssue]
                from miniflash import RegionFull
                raise RegionFull("%s: no room in its region for a checkpoint of its messages; ack some first"
                                 % self.directory)
            return self._compact()

    def _compact(self):
        log = self._open_log()  # raises ClosedError
        try:
            # Deferred events are not flushed into the old segment first (a sync of their own):
            # they lead the checkpoint's first batch in the new one, which supersedes them.
            log.roll()
            ix = self._ix
            # On a flash region a batch must fit in one sector (less its header, 192 bytes at
            # most: miniregion.HEADER_MAX), lines and all: chunks stop at about 2 KiB there.
            # On files at about 4 KiB: a chunk is encoded, sealed and joined at once, and a
            # board's heap may have no larger block (32 entries of 4 KB needed 128 KB).
            overhead = MESSAGE_OVERHEAD if self._region is None else 128  # a line's bytes around its message
            limit = 4096 if self._region is None else min(
                2048, log.store.region.sector_size - 192) - overhead  # pyright: ignore[reportAttributeAccessIssue] (a FlashStore)
            # A file system may persist unsynced appends out of order, so on files each chunk
            # is synced (under the store's policy); a region keeps them in RAM and programs
            # them in order at the sync below.
            unordered = self._region is None
            chunk = []
            size = 0
            count = 0
            for i in ix.slots():
                mid = ix.id_at(i)
                body = ix.body_at(i)
                deliveries = ix.counts.get(mid, 0)
                status = ix.status_at(i)
                count += 1
                # 32 entries per write at most, so a checkpoint never needs all of RAM twice
                # (a literal: a module global costs a board heap)
                if len(chunk) == 32 or (chunk and size + len(body) > limit):
                    self._write(chunk, sync=unordered)
                    chunk = []
                    size = 0
                chunk.append(encode_json({"ckpt": [mid, shim.loads(body), deliveries, status]}))
                size += len(body) + overhead
            if chunk:
                self._write(chunk, sync=unordered)
            self._write([encode_json({"ckpt_end": {"messages": count, "dropped": self.dropped}})], sync=unordered)
            log.sync()
            log.compact(log.segments[-1].base_seq)
            self._ckpt_size = log.active_bytes()
            return count
        except BaseException:
            # A segment rolled, a checkpoint in part: the next write's place is not known.
            self._close_quietly()
            raise

    def disk_bytes(self):
        """Bytes of all journal segments now on disk (on a region: of the records in it)."""
        with self._lock:
            if self._region is not None:
                return self._open_log().store.size  # pyright: ignore[reportAttributeAccessIssue] (a RegionLog's)
            total = 0
            for segment in self._open_log().segments:
                total += shim.file_size(segment.path) or 0
            return total
