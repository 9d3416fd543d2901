"""minimessages: a miniqueue's messages in RAM, as replaying its journal of events
builds them (FORMAT.md 5.1), and the read-only questions asked of them. miniqueue's
MiniQueue writes the events and keeps these in step; MiniQueue.inspect() is this alone.
"""
import minishim as shim
from ministore import MiniError, is_int
from minilog import CompactionGap, oldest_base

try:
    from micropython import const  # pyright: ignore[reportMissingImports, reportAssignmentType] (MicroPython only)
except ImportError:
    def const(value):  # CPython: the plain value
        return value

READY, IN_FLIGHT, DEAD = 0, 1, 2  # a message's status (FORMAT.md 5.1)
# A live message is [body, deliveries, status]: a list, so replay and get() change it in place.
# (miniqueue has the same three: a MicroPython const with a leading _ is not a global to import.)
_BODY = const(0)         # the message as stored JSON bytes
_DELIVERIES = const(1)
_STATUS = const(2)


class UnknownMessage(MiniError):
    """ack/nack of an id that is not in flight (never delivered, already acked, or unknown)."""


class QueueCorrupt(MiniError):
    """An intact journal event that no queue writes (FORMAT.md 5.1): refused, never guessed at."""


def _is_id(value):
    return is_int(value) and value > 0


def _is_count(value):
    return is_int(value) and value >= 0


class Messages:
    """The live messages of a queue and its replay; MiniQueue is one."""

    def __init__(self, directory="", region=None):
        self._lock = shim.allocate_lock()
        self.directory = directory
        self._region = region
        self._start = 0
        self._ckpt = None       # entries of a checkpoint being replayed
        self._ckpt_from = 0     # the seq of its first entry
        self._covered = None    # the seq before the last complete checkpoint
        self._complete = False  # set once the history is whole: from seq 0, or from a finished checkpoint
        self._reset()

    def _find_start(self):
        """The base seq of the oldest segment, or of the region (read under the lock when writing)."""
        if self._region is not None:
            from miniflash import FlashReader
            self._start = FlashReader(self._region).base_seq or 0
        else:
            self._start = oldest_base(self.directory)
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
            if redeliver and entry[_STATUS] == IN_FLIGHT:  # delivered before the restart, never acked: deliver again
                entry[_STATUS] = READY
        self._ready = sorted(mid for mid in self._msgs if self._msgs[mid][_STATUS] == READY)
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
                self._ckpt_from = seq
            self._ckpt.append(arg)
            return
        if kind == "ckpt_end":
            # A complete checkpoint restates the whole queue: it replaces what came before.
            entries = self._ckpt or []
            first = self._ckpt_from if self._ckpt else seq
            self._ckpt = None
            if (self._region is not None and not self._complete and first == self._start + 1 and
                    isinstance(arg, dict) and _is_count(arg.get("messages")) and arg["messages"] > len(entries)):
                # A region's oldest sector can begin inside a checkpoint whose start went with
                # the sector before (a newer checkpoint covered it): that one is not whole, and
                # the one after it restates the queue (FORMAT.md 6.5).
                return
            if not (isinstance(arg, dict) and _is_count(arg.get("dropped")) and _is_count(arg.get("messages"))
                    and arg["messages"] == len(entries)):
                raise QueueCorrupt("checkpoint end at seq %d does not match its %d entries: %r" % (
                    seq, len(entries), arg))
            self._reset()
            self._covered = first - 1  # a complete checkpoint restates all before it
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
            entry[_DELIVERIES] += 1
            entry[_STATUS] = IN_FLIGHT
        elif kind == "nack":
            entry[_STATUS] = READY
        elif kind == "dead":
            entry[_STATUS] = DEAD
        else:  # ack, drop, purge
            self._forget(arg)
            if kind == "drop":
                self.dropped += 1

    def _add(self, mid, body, deliveries, status):
        self._msgs[mid] = [body, deliveries, status]
        self._bytes += len(body)

    def _forget(self, mid):
        entry = self._msgs.pop(mid)
        self._bytes -= len(entry[_BODY])

    # -- questions (under the lock: other threads may be changing the queue)

    def in_flight(self):
        """How many messages were delivered and are not yet acked or nacked."""
        with self._lock:
            return sum(1 for mid in self._msgs if self._msgs[mid][_STATUS] == IN_FLIGHT)

    def dead(self):
        """[(id, message, deliveries)] of the dead letters, oldest first."""
        with self._lock:
            out = []
            for mid in sorted(self._msgs):
                body, deliveries, status = self._msgs[mid]
                if status == DEAD:
                    out.append((mid, shim.loads(body), deliveries))
            return out

    def deliveries(self, mid):
        """How many times the message was delivered (counted across restarts)."""
        with self._lock:
            entry = self._msgs.get(mid)
            if entry is None:
                raise UnknownMessage("no message %r in the queue" % (mid,))
            return entry[_DELIVERIES]

    def live_bytes(self):
        """Bytes of the live messages as stored JSON (what max_bytes bounds)."""
        with self._lock:
            return self._bytes
