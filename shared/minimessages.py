"""minimessages: a miniqueue's messages in RAM, as replaying its journal of events
builds them (FORMAT.md 5.1), and the read-only questions asked of them. miniqueue's
MiniQueue writes the events and keeps these in step; MiniQueue.inspect() is this alone.
"""
import minishim as shim
from ministore import MiniError, is_int
from minilog import CompactionGap, oldest_base

try:
    from bisect import bisect_left as _bisect_left  # pyright: ignore[reportAssignmentType] (CPython: in C; the def below is MicroPython's)
except ImportError:  # MicroPython
    def _bisect_left(ids, mid, lo=0):
        hi = len(ids)
        while lo < hi:
            half = (lo + hi) // 2
            if ids[half] < mid:
                lo = half + 1
            else:
                hi = half
        return lo

READY, IN_FLIGHT, DEAD = 0, 1, 2  # a message's status (FORMAT.md 5.1)
_GONE = 3  # in RAM only: the slot of an acked, dropped or purged message until it is trimmed
_PAGE_BYTES = 1024  # a page's buffer for its short bodies
_SHORT = 255        # a body this long or shorter goes in its page's buffer


class UnknownMessage(MiniError):
    """ack/nack of an id that is not in flight (never delivered, already acked, or unknown)."""


class QueueCorrupt(MiniError):
    """An intact journal event that no queue writes (FORMAT.md 5.1): refused, never guessed at."""


def _is_id(value):
    return is_int(value) and value > 0


def _is_count(value):
    return is_int(value) and value >= 0


class _Index:
    """The live messages in id order, in pages of 64 slots: on a microcontroller a short
    message costs its body and about 15 bytes, with no object, dict slot or list of its
    own, and nothing grows past one page, so a fragmented heap never has to find a block
    as large as a dict or list of every message (issue 14: 1,000 messages in a 96 KB heap).

    A slot is a position p: page p >> 6 holds its id, body (the message as stored JSON
    bytes) and status. A body of up to 255 bytes is copied into its page's buffer and the
    slot holds start * 256 + length; a longer one is kept as it is; None once gone.
    Deliveries are kept only for messages delivered at least once. Ready messages are
    those in `back` (ids, ascending: nacked or due again, all before `next`) and the
    READY slots from `next` on; a get takes the head of `back` first, so delivery stays
    FIFO. A page is freed once all its slots are gone; when more slots are gone than
    live (acks out of order, a dead letter at the head), the live ones are copied into
    new pages.
    """

    def __init__(self):
        self.id_pages = []      # each: up to 64 ascending ids
        self.body_pages = []
        self.status_pages = []  # bytearrays
        self.buffers = []       # each page's short bodies: [bytearray(_PAGE_BYTES), bytes used]
        self.firsts = []        # the first id of each page
        self.base = 0           # the page number of id_pages[0]: pages before it are gone
        self.end = 0            # the position after the last slot
        self.first = 0          # the position of the first live slot (end if none)
        self.live = 0
        self.gone = 0           # _GONE slots from first on
        self.next = 0           # slots before it were delivered or passed over
        self.fresh = 0          # READY slots from next on
        self.back = []          # ready ids before next, ascending
        self.counts = {}        # id -> deliveries, for those delivered at least once
        self.size = 0           # bytes of the live bodies

    def __len__(self):
        return self.live

    def id_at(self, p):
        return self.id_pages[(p >> 6) - self.base][p & 63]

    def body_at(self, p):
        body = self._stored((p >> 6) - self.base, p & 63)
        return bytes(body) if type(body) is bytearray else body  # a short one: a copy of its slice

    def _stored(self, j, k):
        """The body in slot k of page j: a short one as a slice of its page's buffer (a
        bytearray: no bytes copy), a long one as it was added."""
        body = self.body_pages[j][k]
        if type(body) is int:
            start = body >> 8
            return self.buffers[j][0][start:start + (body & 255)]
        return body

    def status_at(self, p):
        return self.status_pages[(p >> 6) - self.base][p & 63]

    def set_status(self, p, status):
        self.status_pages[(p >> 6) - self.base][p & 63] = status

    def deliver(self, p):
        """Slot p (taken from head()) is in flight now. Returns its body to parse: for a short
        one, a bytearray slice, which json reads as it is on both runtimes (no bytes copy)."""
        j = (p >> 6) - self.base
        k = p & 63
        self.status_pages[j][k] = IN_FLIGHT
        return self._stored(j, k)

    def add(self, mid, body, deliveries, status):
        """Append a message; ids only grow (a put's seq, or a checkpoint's ascending entries)."""
        length = len(body)
        if not self.end & 63:
            self.id_pages.append([])
            self.body_pages.append([])
            self.status_pages.append(bytearray())
            self.buffers.append([None, 0])
            self.firsts.append(mid)
        buffer = self.buffers[-1]
        if length <= _SHORT and buffer[1] + length <= _PAGE_BYTES:
            if buffer[0] is None:
                buffer[0] = bytearray(_PAGE_BYTES)  # only for a page that holds a short body
            start = buffer[1]
            buffer[0][start:start + length] = body
            buffer[1] = start + length
            body = start << 8 | length
        self.id_pages[-1].append(mid)
        self.body_pages[-1].append(body)
        self.status_pages[-1].append(status)
        self.end += 1
        self.live += 1
        if deliveries:
            self.counts[mid] = deliveries
        if status == READY:
            self.fresh += 1
        self.size += length

    def find(self, mid):
        """The position of a live message, or -1."""
        if type(mid) is not int:
            return -1  # an id is an int (not a bool): anything else names no message
        j = _bisect_left(self.firsts, mid + 1) - 1  # the page that would hold it
        if j < 0:
            return -1
        ids = self.id_pages[j]
        k = _bisect_left(ids, mid)
        if k < len(ids) and ids[k] == mid and self.status_pages[j][k] != _GONE:
            p = ((j + self.base) << 6) + k
            if p >= self.first:
                return p
        return -1

    def slots(self):
        """The positions of the live messages, in id order."""
        for p in range(self.first, self.end):
            if self.status_at(p) != _GONE:
                yield p

    def restart(self, redeliver):
        """After replay: every READY message is ready again, in id order (and, with
        redeliver, every IN_FLIGHT one: delivered before the restart, never acked)."""
        self.next = self.first
        self.back = []
        self.fresh = 0
        for p in self.slots():
            if redeliver and self.status_at(p) == IN_FLIGHT:
                self.set_status(p, READY)
            if self.status_at(p) == READY:
                self.fresh += 1

    def head(self):
        """The position of the oldest ready message, or -1."""
        if self.back:
            return self.find(self.back[0])  # before next, so older than any slot from there
        p = self.next
        end = self.end
        pages = self.status_pages
        base = self.base
        while p < end and pages[(p >> 6) - base][p & 63] != READY:
            p += 1  # in flight, dead or gone: none of these is ready here again (a nack uses back)
        self.next = p
        return p if p < end else -1

    def take(self, p):
        """Slot p (from head()) is no longer ready."""
        if p >= self.next:
            self.next = p + 1
            self.fresh -= 1
        else:
            del self.back[0]

    def ready_again(self, p):
        """Slot p (delivered, so before next) is ready now: nacked, or its delay is over."""
        self.set_status(p, READY)
        mid = self.id_at(p)
        self.back.insert(_bisect_left(self.back, mid), mid)

    def ready_in_order(self):
        """The ready slots in id order (what drop_oldest drops first), lazily: a put that
        drops one message looks at one or two."""
        for p in [self.find(mid) for mid in self.back]:  # ascending, all before next
            yield p
        for p in range(self.next, self.end):
            if self.status_at(p) == READY:
                yield p

    def remove(self, p):
        base = self.base
        j = (p >> 6) - base
        k = p & 63
        status = self.status_pages[j]
        mid = self.id_pages[j][k]
        if status[k] == READY:
            if p >= self.next:
                self.fresh -= 1
            elif mid in self.back:
                self.back.remove(mid)
        bodies = self.body_pages[j]
        body = bodies[k]
        self.size -= body & 255 if type(body) is int else len(body)
        bodies[k] = None
        status[k] = _GONE
        self.counts.pop(mid, None)
        self.live -= 1
        gone = self.gone
        if p == self.first:  # the head moves past it, and past the gone slots after it
            first = p + 1
            end = self.end
            pages = self.status_pages
            while first < end and pages[(first >> 6) - base][first & 63] == _GONE:
                first += 1
                gone -= 1
            self.first = first
            while (base + 1) << 6 <= first:  # a page wholly gone at the head
                del self.id_pages[0], self.body_pages[0], self.status_pages[0], self.buffers[0], self.firsts[0]
                base += 1
            self.base = base
            if self.next < first:
                self.next = first
        else:
            gone += 1
        self.gone = gone
        if gone > 32 and gone > self.live:
            self._pack()  # acks out of order, or a dead letter at the head: copy the live slots

    def _pack(self):
        packed = _Index()
        before_next = 0
        for p in self.slots():
            if p < self.next:
                before_next += 1
            packed.add(self.id_at(p), self.body_at(p), 0, self.status_at(p))
        self.id_pages, self.body_pages, self.status_pages = packed.id_pages, packed.body_pages, packed.status_pages
        self.buffers, self.firsts = packed.buffers, packed.firsts
        self.base = self.first = self.gone = 0
        self.end = packed.end
        self.next = before_next


class Messages:
    """The live messages of a queue and its replay; MiniQueue is one."""

    def __init__(self, directory="", region=None):
        self._lock = shim.allocate_lock()
        self.directory = directory
        self._region = region
        self._start = 0
        self._ckpt = None       # _Index of a checkpoint being replayed
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
        self._ix.restart(redeliver)

    def _reset(self):
        self._ix = _Index()
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
            if self._ckpt is None or self._ckpt.id_pages[-1][-1] >= arg[0]:
                # Entries ascend by id. One that does not starts a new checkpoint: the one
                # before was cut short and a compact() right after the reopen began again.
                self._ckpt = _Index()
                self._ckpt_from = seq
            self._ckpt.add(arg[0], shim.dumps(arg[1]).encode(), arg[2], arg[3])
            return
        if kind == "ckpt_end":
            # A complete checkpoint restates the whole queue: it replaces what came before.
            entries = self._ckpt or _Index()
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
            self._covered = first - 1  # a complete checkpoint restates all before it
            self.dropped = arg["dropped"]
            self._ix = entries  # built apart: nothing replayed before it is kept
            self._complete = True
            return
        self._ckpt = None  # events after an unfinished checkpoint: the crash cut it short
        if kind == "put":
            if self._complete:
                self._ix.add(seq, shim.dumps(arg).encode(), 0, READY)
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
        ix = self._ix
        i = ix.find(arg)
        if i < 0:
            raise QueueCorrupt("queue event at seq %d names unknown message %r" % (seq, arg))
        # Statuses only: restart() recounts what is ready once the replay ends.
        if kind == "get":
            ix.counts[arg] = ix.counts.get(arg, 0) + 1
            ix.set_status(i, IN_FLIGHT)
        elif kind == "nack":
            ix.set_status(i, READY)
        elif kind == "dead":
            ix.set_status(i, DEAD)
        else:  # ack, drop, purge
            ix.remove(i)
            if kind == "drop":
                self.dropped += 1

    # -- questions (under the lock: other threads may be changing the queue)

    def _count(self, status):
        ix = self._ix
        return sum(1 for p in ix.slots() if ix.status_at(p) == status)

    def _entries(self):
        """{id: [message as stored JSON bytes, deliveries, status]} of the live messages (tests)."""
        ix = self._ix
        out = {}
        for p in ix.slots():
            mid = ix.id_at(p)
            out[mid] = [ix.body_at(p), ix.counts.get(mid, 0), ix.status_at(p)]
        return out

    def _ready_ids(self):
        """The ids of the messages ready now, in the order get() delivers them (tests)."""
        ix = self._ix
        return [ix.id_at(p) for p in ix.ready_in_order()]

    def in_flight(self):
        """How many messages were delivered and are not yet acked or nacked."""
        with self._lock:
            return self._count(IN_FLIGHT)

    def dead(self):
        """[(id, message, deliveries)] of the dead letters, oldest first."""
        with self._lock:
            ix = self._ix
            out = []
            for p in ix.slots():
                if ix.status_at(p) == DEAD:
                    mid = ix.id_at(p)
                    out.append((mid, shim.loads(ix.body_at(p)), ix.counts.get(mid, 0)))
            return out

    def deliveries(self, mid):
        """How many times the message was delivered (counted across restarts)."""
        with self._lock:
            if self._ix.find(mid) < 0:
                raise UnknownMessage("no message %r in the queue" % (mid,))
            return self._ix.counts.get(mid, 0)

    def live_bytes(self):
        """Bytes of the live messages as stored JSON (what max_bytes bounds)."""
        with self._lock:
            return self._ix.size
