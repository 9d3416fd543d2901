# miniqueue: a durable local FIFO queue with acknowledgement and redelivery.
# The journal of events and its checkpoints are specified in FORMAT.md, section 5.
#
# Every change is an event in a segmented journal (minisnap.SegmentedLog). A
# message's id is the seq of its "put" event, which compaction never changes.
# Space comes back through checkpoints: a new segment that restates the live
# messages, ended by a "ckpt_end" marker; older segments are removed only once
# that marker is durable.
import minishim as shim
from ministore import MiniError, encode_json, is_int, settle
from minisnap import LogOwner, SegmentedLog, CompactionGap, segment_files, segment_base, read_segments

READY, IN_FLIGHT, DEAD = 0, 1, 2
_CKPT_CHUNK = 32        # checkpoint entries per write, so a checkpoint never needs all of RAM twice
MESSAGE_OVERHEAD = 64   # journal bytes around a message in a checkpoint line, at most (FORMAT.md 5.4)


class QueueFull(MiniError):
    """put() would take the queue past max_bytes and on_full is "reject". Nothing was written."""


class UnknownMessage(MiniError):
    """ack/nack of an id that is not in flight (never delivered, already acked, or unknown)."""


class QueueCorrupt(MiniError):
    """An intact journal event that no queue writes (FORMAT.md 5.1): refused, never guessed at."""


def _is_id(value):
    return is_int(value) and value > 0


def _is_count(value):
    return is_int(value) and value >= 0


class MiniQueue(LogOwner):
    """Use MiniQueue.open()."""

    def __init__(self):
        self._log = None
        self.directory = ""
        self.max_bytes = 0
        self.on_full = "reject"
        self.max_deliveries = None
        self.compact_bytes = 0
        self.last_seq = 0
        self._start = 0
        self._complete = False
        self._ckpt = None
        self._reset()

    @staticmethod
    def open(directory, max_bytes=64 * 1024, on_full="reject", max_deliveries=None,
             sync: "str | int" = "always", compact_bytes=None):
        """Open (creating if needed) the queue in `directory`.

        max_bytes bounds the live messages (ready, in flight and dead, as stored
        JSON). on_full: "reject" (QueueFull) or "drop_oldest" (a ring buffer; see
        `dropped`). max_deliveries: after that many deliveries a message goes to
        dead() instead of being delivered again. compact_bytes: journal bytes
        written since the last checkpoint that trigger the next (default max_bytes).
        """
        if on_full not in ("reject", "drop_oldest"):
            raise ValueError('on_full must be "reject" or "drop_oldest"')
        for name, value in (("max_bytes", max_bytes), ("max_deliveries", max_deliveries),
                            ("compact_bytes", compact_bytes)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError("%s must be an int >= 1" % name)
        if max_bytes is None:
            raise ValueError("max_bytes must be an int >= 1")
        q = MiniQueue._replayer(directory)
        q.max_bytes = max_bytes
        q.on_full = on_full
        q.max_deliveries = max_deliveries
        q.compact_bytes = compact_bytes or max_bytes
        log = SegmentedLog.open(directory, after_seq=q._find_start, apply=q._replay, sync=sync)
        q._log = log
        try:
            q._finish_replay()
        except BaseException:
            log.close()
            raise
        # Where the checkpoint in the active segment ended is not stored; a generous
        # estimate from the live messages keeps the trigger from firing at once and,
        # unlike a count reset at each boot, keeps the segment bounded across reboots.
        q._ckpt_size = min(log.active_bytes(), q._bytes + MESSAGE_OVERHEAD * (len(q._msgs) + 1))
        return q

    @staticmethod
    def inspect(directory):
        """Read-only (no lock, no writes): the queue as a restart would find it.

        len(), in_flight() (as it was: a restart would make them ready), dead(),
        dropped, deliveries() and live_bytes() work on the result; changing it does not.
        """
        q = MiniQueue._replayer(directory)
        q.last_seq = read_segments(directory, q._find_start(), q._replay)
        q._finish_replay(redeliver=False)
        return q

    @staticmethod
    def _replayer(directory):
        q = MiniQueue()
        q.directory = directory
        q._reset()
        q._ckpt = None          # entries of a checkpoint being replayed
        q._complete = False     # set once the history is whole: from seq 0, or from a finished checkpoint
        return q

    def _find_start(self):
        """The base seq of the oldest segment (read under the lock when writing)."""
        segments = segment_files(self.directory)
        self._start = segment_base(segments[0][1]) or 0 if segments else 0
        self._complete = self._start == 0
        return self._start

    def _finish_replay(self, redeliver=True):
        if not self._complete:
            raise CompactionGap("%s: the oldest segment starts after seq %d and no complete checkpoint follows" % (
                self.directory, self._start))
        # A checkpoint cut short by a crash is ignored: the segments before it still
        # hold the state, and the next checkpoint will replace them.
        self._ckpt = None
        for mid in self._msgs:
            entry = self._msgs[mid]
            if redeliver and entry[2] == IN_FLIGHT:  # delivered before the restart, never acked: deliver again
                entry[2] = READY
        self._ready = sorted(mid for mid in self._msgs if self._msgs[mid][2] == READY)
        self._head = 0

    def _reset(self):
        self._msgs = {}         # id -> [message as JSON bytes, deliveries, READY/IN_FLIGHT/DEAD]
        self._ready = []        # ready ids, ascending (FIFO order), from index _head on
        self._head = 0          # delivered ids before it are trimmed lazily: get() stays O(1)
        self._bytes = 0
        self.dropped = 0
        self._ckpt_size = 0     # size of the active segment when its checkpoint ended

    # -- replay

    def _replay(self, seq, event):
        if not isinstance(event, dict) or len(event) != 1:
            raise QueueCorrupt("queue event at seq %d is not an event: %r" % (seq, event))
        for kind in event:
            arg = event[kind]
        if kind == "ckpt":
            # An id is the seq of an earlier put, so it is below this entry's seq.
            if not (isinstance(arg, list) and len(arg) == 4 and _is_id(arg[0]) and arg[0] < seq and
                    _is_count(arg[2]) and _is_count(arg[3]) and arg[3] <= DEAD):
                raise QueueCorrupt("checkpoint entry at seq %d is not [id, message, deliveries, status]: %r" % (
                    seq, arg))
            if self._ckpt is None or self._ckpt[-1][0] >= arg[0]:
                # Entries ascend by id. One that does not starts a new checkpoint: the one
                # before was cut short and a compact() right after the reopen began again.
                self._ckpt = []
            self._ckpt.append(arg)
            return
        if kind == "ckpt_end":
            # A complete checkpoint restates the whole queue: it replaces what came before.
            entries = self._ckpt or []
            self._ckpt = None
            if not (isinstance(arg, dict) and _is_count(arg.get("dropped")) and _is_count(arg.get("messages"))
                    and arg["messages"] == len(entries)):
                raise QueueCorrupt("checkpoint end at seq %d does not match its %d entries: %r" % (
                    seq, len(entries), arg))
            self._reset()
            self.dropped = arg["dropped"]
            for mid, message, deliveries, status in entries:
                self._add(mid, shim.dumps(message).encode(), deliveries, status)
            self._complete = True
            return
        self._ckpt = None  # events after an unfinished checkpoint: the crash cut it short
        if kind == "put":
            if self._complete:
                self._add(seq, shim.dumps(arg).encode(), 0, READY)
            return
        if kind not in ("get", "nack", "dead", "ack", "drop", "purge"):
            raise QueueCorrupt("queue event at seq %d has unknown kind %r" % (seq, kind))
        if not _is_id(arg) or arg >= seq:
            raise QueueCorrupt("queue event at seq %d names no message id: %r" % (seq, event))
        if not self._complete:
            # History before the first complete checkpoint: a compaction that was cut
            # while removing old segments (oldest first) leaves some. The checkpoint
            # ahead restates the whole queue, so these events are not needed.
            return
        entry = self._msgs.get(arg)
        if entry is None:
            raise QueueCorrupt("queue event at seq %d names unknown message %r" % (seq, arg))
        if kind == "get":
            entry[1] += 1
            entry[2] = IN_FLIGHT
        elif kind == "nack":
            entry[2] = READY
        elif kind == "dead":
            entry[2] = DEAD
        else:  # ack, drop, purge
            self._forget(arg)
            if kind == "drop":
                self.dropped += 1

    def _add(self, mid, body, deliveries, status):
        self._msgs[mid] = [body, deliveries, status]
        self._bytes += len(body)

    def _forget(self, mid):
        entry = self._msgs.pop(mid)
        self._bytes -= len(entry[0])

    # -- the queue

    def __len__(self):
        return len(self._ready) - self._head

    def in_flight(self):
        """How many messages were delivered and are not yet acked or nacked."""
        return sum(1 for mid in self._msgs if self._msgs[mid][2] == IN_FLIGHT)

    def dead(self):
        """[(id, message, deliveries)] of the dead letters, oldest first."""
        out = []
        for mid in sorted(self._msgs):
            body, deliveries, status = self._msgs[mid]
            if status == DEAD:
                out.append((mid, shim.loads(body), deliveries))
        return out

    def deliveries(self, mid):
        """How many times the message was delivered (counted across restarts)."""
        entry = self._msgs.get(mid)
        if entry is None:
            raise UnknownMessage("no message %r in the queue" % (mid,))
        return entry[1]

    def live_bytes(self):
        return self._bytes

    def put(self, message):
        """Add a message; durable (under sync="always") when its id is returned."""
        return self.put_many([message])[0]

    def put_many(self, messages):
        """Add messages as one atomic batch with one sync; return their ids."""
        log = self._open_log()
        bodies = []
        for message in messages:
            # Two levels down in a checkpoint: {"ckpt": [id, M, ...]}. settle(): what a
            # restart replays is what get() delivers, also on MicroPython (FORMAT.md 1).
            bodies.append(settle(encode_json(message, 2)))
        if not bodies:
            return []
        need = 0
        for body in bodies:
            need += len(body)
        if need > self.max_bytes:
            raise QueueFull("%d bytes of messages exceed max_bytes=%d" % (need, self.max_bytes))
        events = []
        drops = []
        if self._bytes + need > self.max_bytes:
            if self.on_full == "reject":
                raise QueueFull("queue %s is full: %d + %d bytes > max_bytes=%d" % (
                    self.directory, self._bytes, need, self.max_bytes))
            freed = 0
            for mid in self._ready[self._head:]:
                if self._bytes - freed + need <= self.max_bytes:
                    break
                drops.append(mid)
                freed += len(self._msgs[mid][0])
            if self._bytes - freed + need > self.max_bytes:
                raise QueueFull("queue %s is full of in-flight and dead messages" % self.directory)
            events = [{"drop": mid} for mid in drops]
        first = log.seq + len(events) + 1
        self._write([encode_json(event) for event in events] + [b'{"put":%s}' % body for body in bodies], True)
        for mid in drops:
            self._forget(mid)
            self.dropped += 1
        if drops:
            self._head += len(drops)
        ids = []
        for i in range(len(bodies)):
            self._add(first + i, bodies[i], 0, READY)
            self._ready.append(first + i)
            ids.append(first + i)
        self._maybe_compact()
        return ids

    def get(self):
        """Deliver the oldest ready message as (id, message), or None when there is none. Never blocks."""
        self._open_log()
        while self._head < len(self._ready):
            mid = self._ready[self._head]
            entry = self._msgs[mid]
            if self.max_deliveries is not None and entry[1] >= self.max_deliveries:
                self._write([{"dead": mid}])
                entry[2] = DEAD
                self._pop_ready()
                continue
            self._write([{"get": mid}])
            self._pop_ready()
            entry[1] += 1
            entry[2] = IN_FLIGHT
            self._maybe_compact()
            return mid, shim.loads(entry[0])
        return None

    def ack(self, mid):
        """The message was handled: durable (under sync="always"); it is never delivered again."""
        self._in_flight(mid)
        self._write([{"ack": mid}])
        self._forget(mid)
        self._maybe_compact()

    def nack(self, mid):
        """Put a delivered message back in its place in the queue, for a later get()."""
        entry = self._in_flight(mid)
        self._write([{"nack": mid}])
        entry[2] = READY
        self._insert_ready(mid)
        self._maybe_compact()

    def purge_dead(self):
        """Remove every dead letter; return how many."""
        self._open_log()
        ids = [mid for mid in sorted(self._msgs) if self._msgs[mid][2] == DEAD]
        if ids:
            self._write([{"purge": mid} for mid in ids])
            for mid in ids:
                self._forget(mid)
            self._maybe_compact()
        return len(ids)

    def _in_flight(self, mid):
        self._open_log()
        entry = self._msgs.get(mid)
        if entry is None or entry[2] != IN_FLIGHT:
            state = "unknown or already acked" if entry is None else ("dead" if entry[2] == DEAD else "not delivered")
            raise UnknownMessage("message %r is not in flight (%s)" % (mid, state))
        return entry

    def _pop_ready(self):
        self._head += 1
        if self._head >= 64 and self._head * 2 >= len(self._ready):
            del self._ready[:self._head]
            self._head = 0

    def _insert_ready(self, mid):
        lo, hi = self._head, len(self._ready)
        while lo < hi:
            mid_index = (lo + hi) // 2
            if self._ready[mid_index] < mid:
                lo = mid_index + 1
            else:
                hi = mid_index
        self._ready.insert(lo, mid)

    def _write(self, events, encoded=False):
        log = self._open_log()
        try:
            if encoded:
                log._append_encoded(events)
            elif len(events) == 1:
                log.append(events[0])
            else:
                log.append_many(events)
        except OSError:
            self._close_quietly()  # memory and journal may now disagree: only a reopen is trusted
            raise

    # -- space

    def _maybe_compact(self):
        if self._open_log().active_bytes() - self._ckpt_size >= self.compact_bytes:
            self.compact()

    def compact(self):
        """Write a checkpoint of the live messages in a new segment, then drop the older segments."""
        log = self._open_log()
        log.roll()
        mids = sorted(self._msgs)
        for start in range(0, len(mids), _CKPT_CHUNK):
            chunk = []
            for mid in mids[start:start + _CKPT_CHUNK]:
                body, deliveries, status = self._msgs[mid]
                chunk.append({"ckpt": [mid, shim.loads(body), deliveries, status]})
            self._write(chunk)
        self._write([{"ckpt_end": {"messages": len(mids), "dropped": self.dropped}}])
        log.sync()
        log.compact(log.segments[-1][2])
        self._ckpt_size = log.active_bytes()
        return len(mids)

    def disk_bytes(self):
        """Bytes of all journal segments now on disk."""
        total = 0
        for number, path, base in self._open_log().segments:
            total += shim.file_size(path) or 0
        return total
