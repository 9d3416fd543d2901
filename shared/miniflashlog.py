"""miniflashlog: the journal of ministate and miniqueue (the interface of
minilog.SegmentedLog) on a raw flash region (miniflash, FORMAT.md 6), the snapshots
staying in files."""
#
# Where SegmentedLog starts a new segment file and removes the old ones, a region
# keeps one journal whose seqs run on: roll() only marks where the records since the
# last snapshot begin, and compact(seq) releases the records up to seq, so that their
# sectors may be erased and reused once the ring comes round to them. Nothing is
# released before the snapshot that covers it is durable (ministate's order).
import minishim as shim
from ministore import hold
from minilog import CompactionGap, Segment, SegmentedLog
from miniflash import FlashStore, FlashReader, HEADER_MAX, as_region

_LINE_OVERHEAD = 40  # bytes of a record line around its JSON, about (active_bytes of replayed records)


def _check(region):
    region = as_region(region)
    if region.retain is not None:
        raise ValueError("a state's journal region releases sectors through snapshots: give it no retain= policy")
    return region


def _gap_check(name, tail_base, after_seq, last):
    if tail_base is not None and tail_base > after_seq:
        raise CompactionGap("%s starts after seq %d, but the newest valid snapshot covers only up to seq %d: "
                            "records %d..%d are gone" % (name, tail_base, after_seq, after_seq + 1, tail_base))
    if last < after_seq:
        raise CompactionGap("the snapshot is at seq %d but the journal ends at seq %d" % (after_seq, last))


class RegionLog(SegmentedLog):
    """A journal on a flash region: a SegmentedLog whose one segment is the region. What
    it writes goes through SegmentedLog's methods to the store (a FlashStore); it never
    opens a segment file."""

    def __init__(self, directory, store, lock, since):
        self.directory = directory
        self.lock = lock
        self.store = store
        self.segments = [Segment(1, store.path, store.seq)]  # one: base_seq is the seq of the last roll
        self._since = since  # bytes of the records replayed at open that came after the last snapshot, about
        self._mark = store.appended  # the store's count of bytes appended at the last roll
        self._planned = None  # (key, sectors) of keeps_room's last exact plan
        self._looked = None  # the head sector's number at compaction_due's last look

    @staticmethod
    def open(directory, region, after_seq=0, apply=None, sync: "str | int" = "always", covered=None, start=None):
        """Lock `directory` (where the snapshots are), open the journal in `region`, call
        apply(seq, record) for every record after `after_seq` (or after what start(),
        called under the lock, returns), then release what `covered()` says is covered
        by snapshots."""
        region = _check(region)
        shim.makedirs(directory)
        lock = hold(shim.DirLock, directory)
        try:
            after = start() if start is not None else after_seq
            since = [0]

            def replay(seq, record):
                if seq > after:
                    since[0] += len(shim.dumps(record)) + _LINE_OVERHEAD
                    if apply is not None:
                        apply(seq, record)
            store = FlashStore.open(region, sync=sync, base_seq=after, replay=replay)
            try:
                _gap_check(region.name, store._ring[0][2] if store._ring else None, after, store.seq)
                done = covered() if covered is not None else None
                if done is not None:
                    store.release(done)
                return RegionLog(directory, store, lock, since[0])  # in the try: see MiniStore.open
            except BaseException:
                store.close()
                raise
        except BaseException:
            lock.release()
            raise

    def check_fits(self, bodies, overhead=0):
        """Before anything is written or done, with `overhead` > 0: ValueError for a message
        that a checkpoint could not hold (its line, `overhead` bytes around it at most, must
        fit in one sector); without: ValueError or RegionFull for a batch (encoded) that
        the region's write would refuse now (FlashStore.check_batch): a brick that acts on a
        batch before it is journaled (a StateManager applies it) could not undo that."""
        if not overhead:
            self.store.check_batch(bodies)
            return
        room = self.store.region.sector_size - HEADER_MAX - overhead
        for body in bodies:
            if len(body) > room:
                raise ValueError("a message of %d bytes cannot be checkpointed in this region "
                                 "(at most %d in a %d-byte sector)" % (len(body), room, self.store.region.sector_size))

    def compaction_due(self, ix, by_size):
        """Whether a queue whose index is `ix` compacts now: when `by_size` (compact_bytes
        of events written), or, looked at once each time a sector has been opened, when
        fewer than 2 spare sectors would stay beside a checkpoint of its messages (the
        next write may take one); and in both cases only when that checkpoint fits. One
        that did not would stop at RegionFull, and what it wrote would stay in the way
        until a checkpoint completes: after a power cut in one, or a region written
        fuller than this version allows, acks shrink the checkpoint until one fits. At
        the room's limit this is one compaction per sector of events, not one per event."""
        ring = self.store._ring
        head = ring[-1][1] if ring else 0
        if head != self._looked:
            self._looked = head
            by_size = by_size or not self.keeps_room(ix, (), (), 2, False)
        return by_size and self.keeps_room(ix, (), (), 0, False)

    def keeps_room(self, ix, bodies, drops, kept, capped):
        """Whether a checkpoint of the live messages of queue index `ix`, once `bodies` are
        added and the ids `drops` removed, fits the region's spare sectors less `kept`, and
        if `capped` takes at most (sectors - 4) // 2 sectors (FORMAT.md 6.5). A put keeps 2
        spare and the cap, and compaction_due() compacts once fewer than 2 would stay: so
        a compaction finds room, leaves 2 sectors of events before the next, and room for
        the next beside one a power cut stopped. Without this a queue whose messages
        filled the region could write no get or ack, nor the checkpoint that would free
        the region, at this boot or any later one."""
        store = self.store
        region = store.region
        size = region.sector_size
        at = store._pos
        for entry in store._pending:  # the sectors its unsynced records take first (FlashStore._fits)
            if at + entry[1] > size:
                kept += 1
                at = HEADER_MAX
            at += entry[1]
        most = store._spare() - kept
        if capped:
            most = min(most, (region.sectors - 4) // 2)
        if most < 1:
            return False
        count = len(ix) + len(bodies) - len(drops)
        # Each line as long as it will be: {"seq":S,"rec":{"ckpt":[ID,M,D,T]},"crc":"X"}\n is
        # 48 bytes, the digits of S, ID (no more than S's), D (up to 11: FORMAT.md 6.5's
        # bound) and T (1), and M (as stored; 8 more in case it encodes longer); a batch's
        # first line also ,"batch":N (11).
        digits = len(str(store.seq + count + 2))
        line = 68 + 2 * digits
        weight = ix.size + (line + 11) * count + 160  # as if each line began a batch; ckpt_end's line
        for body in bodies:
            weight += len(body)
        for mid in drops:
            weight -= _length(ix, ix.find(mid))
        # A bound: a sector is left for the next one only when the next batch does not fit
        # in what is left of it, so any two sectors in a row hold more than one sector.
        if 2 * weight // (size - HEADER_MAX) + 1 <= most:
            return True
        # Near the bound: the batches _compact would make, placed as the store places them.
        # The plan for the live messages as they are holds until one is added or removed:
        # ids only grow, so between two adds the newest id in the index stays, and with it
        # and the count the same, so are the messages (a get changes neither: it is free).
        pages = ix.id_pages
        key = None if bodies or drops else (pages[-1][-1] if pages else -1, count, digits)
        planned = self._planned
        if key is not None and planned is not None and planned[0] == key:
            return planned[1] <= most
        limit = min(2048, size - HEADER_MAX) - 128  # _compact's batches: at most this much, 128 bytes a line
        sectors = 0
        at = size  # the head's room is not counted on
        rule = fill = entries = 0
        for length in _live_lengths(ix, bodies, drops):
            if entries == 32 or (entries and rule + length > limit):
                if at + fill > size:
                    sectors += 1
                    at = HEADER_MAX
                at += fill
                rule = fill = entries = 0
            rule += length + 128  # _compact's estimate, which decides where its batches end
            fill += length + line + (11 if not entries else 0)
            entries += 1
        for fill in (fill, 160):  # the last batch, then ckpt_end's line (under 160 bytes)
            if fill and at + fill > size:
                sectors += 1
                at = HEADER_MAX
            at += fill
        if key is not None:
            self._planned = (key, sectors)
        return sectors <= most

    def replay(self, after_seq, apply):
        """Read the journal again; call apply(seq, record) for the records after `after_seq`."""
        self.store.sync()
        for seq, record in FlashReader(self.store.region):
            if seq > after_seq:
                apply(seq, record)

    def active_bytes(self):
        """Bytes of records since the last roll(), about (what triggers snapshot_bytes)."""
        return self._since + self.store.appended - self._mark

    def roll(self, between=None):
        """Where a segmented log starts a new segment: here only the count restarts."""
        self.store.sync()
        if between is not None:
            between()
        self.segments = [Segment(1, self.store.path, self.store.seq)]
        self._since = 0
        self._mark = self.store.appended

    def compact(self, upto_seq):
        """Records up to `upto_seq` are covered (by the oldest snapshot kept): release them."""
        if upto_seq is not None:
            self.store.release(upto_seq)
        return 0


def _live_lengths(ix, bodies, drops):
    """The lengths of the live messages' bodies (less the ids `drops`) in _compact's order,
    then of `bodies`; read from minimessages' pages, without body_at()'s copies."""
    gone = 3  # minimessages._GONE
    for j in range(len(ix.id_pages)):
        statuses = ix.status_pages[j]
        stored = ix.body_pages[j]
        ids = ix.id_pages[j]
        for k in range(len(ids)):
            if statuses[k] != gone and not (drops and ids[k] in drops):
                body = stored[k]
                yield body & 255 if type(body) is int else len(body)  # a short one is start << 8 | length
    for body in bodies:
        yield len(body)


def _length(ix, p):
    """The length of the body in slot p of `ix`, without the copy body_at() makes of a short one."""
    body = ix.body_pages[(p >> 6) - ix.base][p & 63]
    return body & 255 if type(body) is int else len(body)  # minimessages: a short one is start << 8 | length


def read_region(region, after_seq=0, apply=None):
    """Read-only (no lock, no writes): replay the journal in `region` after `after_seq`; return the last seq."""
    reader = FlashReader(_check(region))
    for seq, record in reader:
        if seq > after_seq and apply is not None:
            apply(seq, record)
    last = 0 if reader.seq is None else reader.seq
    _gap_check(reader.path, reader.base_seq, after_seq, last)
    return last
