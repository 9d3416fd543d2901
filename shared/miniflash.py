# miniflash: a ministore journal written straight into a raw flash region (FORMAT.md 6).
# The region is a ring of erase sectors on a block device with the extended interface
# (readblocks(n, buf, off); writeblocks(n, buf, off), which programs without erasing;
# ioctl(6, n), which erases): esp32.Partition, rp2.Flash, or a sub-range of either.
# An append programs erased space only, so it costs no erase; each sector is erased
# once per trip round the ring, which spreads the wear evenly. Records are the sealed
# JSON lines of a ministore journal (FORMAT.md 2.2): a raw dump shows JSONL.
import minishim as shim
from ministore import (MiniError, FormatError, ClosedError, CorruptRecord, record_line, encode_json, is_int,
                       length_of)
from miniregion import (FORMAT_NAME, FORMAT_VERSION, HEADER_MAX, Region, SubDevice, FlashReader, FellBehind,  # noqa: F401
                        as_region, header_line, read_header, _hold, _let_go)


_SEQ_LIMIT = 10 ** 20  # with 20-digit number and erases, a header of any geometry up to 65536 x 65536 is < 192 bytes


class RegionFull(MiniError):
    """The next sector still holds records nothing covers: release(seq) them, or open with a retain= policy."""


class FlashStore:
    """A journal on a flash region, opened for appending. Use MiniStore.open(region) or FlashStore.open().

    Several threads may share it: every public method holds `_lock` (appends are whole
    and in seq order), calling only the unlocked internals (MicroPython's lock is not
    reentrant). A program runs under the lock: the chip does one thing at a time anyway."""

    def __init__(self, region, sync_every, reader, seq, owner):
        self.region = region
        self._live = True  # False once closed
        self.path = region.name
        self.sync_every = sync_every
        self.seq = self.durable_seq = seq
        self._written = seq  # last seq programmed
        self._ring = reader.ring
        self._erases = reader.erases
        self._released = -1
        self._pending = []   # (lines, their bytes, last seq) of records not yet programmed
        self._unsynced = 0
        self.appended = 0  # bytes of record lines appended since open (RegionLog's active_bytes)
        self._pos = region.sector_size if reader.head_end is None else reader.head_end
        self._redo = _torn_and_empty(reader)  # the next sector is the head again
        self._lock = shim.allocate_lock()
        # Dropped unclosed on CPython: let the region go, as a collected file writer does.
        self._finalizer = None if shim.finalize is None else shim.finalize(self, _let_go, owner)
        self._owner = owner

    @staticmethod
    def open(region, sync: "str | int" = "always", base_seq=0, replay=None):
        """Open the journal in `region` (a Region or a block device); see MiniStore.open."""
        region = as_region(region)
        sync_every = None if sync == "always" else sync
        if sync_every is not None and not (isinstance(sync, int) and is_int(sync) and sync >= 1):
            raise ValueError('sync must be "always" or an int >= 1, not %r' % (sync,))
        if not is_int(base_seq) or base_seq < 0 or base_seq >= _SEQ_LIMIT:
            # A sector header (number, erases, base_seq) must stay under HEADER_MAX bytes.
            raise ValueError("base_seq must be an int 0 .. 10**20 - 1")
        owner = [region.key]  # its entry in the writers' registry
        try:  # _hold too: a KeyboardInterrupt that lands right after it must let the region go
            _hold(region, owner)
            # The writer needs only the head sector; a replay reads (and checks) them all.
            reader = FlashReader(region, head_only=replay is None and region.retain is None)
            for seq, record in reader:
                if replay is not None:
                    replay(seq, record)
            if not reader.ring:
                _check_blank(region, base_seq)
                return FlashStore(region, sync_every, reader, base_seq, owner)
            _check_free(reader)
            return FlashStore(region, sync_every, reader, reader.seq, owner)
        except BaseException:
            _let_go(owner)
            raise

    # -- writing

    def append(self, record):
        """Append one record; return its seq. Durable when this returns under sync="always"."""
        return self.append_encoded([encode_json(record)])

    def append_many(self, records):
        """Append records as one atomic batch with one program; return the last seq."""
        return self.append_encoded([encode_json(r) for r in records])

    def append_encoded(self, bodies, durable=True, lead=()):
        """As MiniStore.append_encoded: `lead` are groups of records (each a batch) before
        the batch. Here every record waits in RAM until the sync programs them, in order."""
        with self._lock:
            for group in lead:
                self._append_batch(group, False)
            if bodies or not durable:
                return self._append_batch(bodies, durable)
            if self.sync_every is None or self._unsynced >= self.sync_every:
                self._sync()
            return self.seq

    def check_batch(self, bodies):
        """Raise what appending `bodies` (encoded) as one batch now would raise, ValueError or
        RegionFull, without appending: for a brick that acts on a batch before it is
        journaled (a StateManager applies it) and could not undo that if the write refused."""
        with self._lock:
            if bodies:
                self._batch_lines(bodies)

    def _batch_lines(self, bodies):
        """The lines of `bodies` as the next batch, and their length; ValueError or
        RegionFull if the region cannot take them now."""
        count = len(bodies)
        lines = [record_line(self.seq + 1, bodies[0], count)]
        for i in range(1, count):
            lines.append(record_line(self.seq + 1 + i, bodies[i]))
        length = length_of(lines)  # not joined: Region.program takes the pieces (a board's heap may hold no 4 KB block)
        room = self.region.sector_size - HEADER_MAX
        if length > room:
            raise ValueError("%d bytes of record lines do not fit in one sector (at most %d)" % (length, room))
        if not self._fits(length):
            raise RegionFull("%s: the oldest sector still holds records nothing released (release(seq) them, "
                             "or open with Region(..., retain=BYTES))" % self.path)
        return lines, length

    def _append_batch(self, bodies, durable):
        if not self._live:
            raise ClosedError("%s is closed" % self.path)
        count = len(bodies)
        if count == 0:
            return self.seq
        lines, length = self._batch_lines(bodies)
        last = self.seq + count
        self._pending.append((lines, length, last))  # first: a MemoryError here leaves no seq counted unwritten
        self.seq = last
        self.appended += length
        self._unsynced += count
        if durable and (self.sync_every is None or self._unsynced >= self.sync_every):
            self._sync()
        return self.seq

    def release(self, seq):
        """Records up to `seq` are no longer needed (a snapshot, or acks, cover them): their
        sectors may be erased for reuse. Kept in memory only: call it again after a reopen."""
        with self._lock:
            if seq > self._released:
                self._released = seq

    def _fits(self, length):
        """Whether the pending records plus `length` bytes find room without a RegionFull."""
        at = self._pos
        need = 0
        for n in [entry[1] for entry in self._pending] + [length]:
            if at + n > self.region.sector_size:
                need += 1
                at = HEADER_MAX  # more than any header takes: a safe estimate
            at += n
        return need == 0 or need <= self._spare()  # _spare() walks the ring: only when a sector is needed

    def _spare(self):
        """Sectors the writer may take: the free ones, then the oldest ones that are covered."""
        ring = self._ring
        spare = self.region.sectors - len(ring) + (1 if self._redo else 0)
        retain = self.region.retain
        kept = 0
        for entry in ring:
            kept += entry[3]
        for at in range(len(ring) - 1):
            kept -= ring[at][3]
            if ring[at + 1][2] <= self._released or (retain is not None and kept >= retain):
                spare += 1
            else:
                break
        return spare

    def sync(self):
        """Program every record appended so far; durable when this returns."""
        with self._lock:
            self._sync()

    def _sync(self):
        region = self.region
        if not self._live:
            raise ClosedError("%s is closed" % self.path)
        if not self._pending:
            return
        size = region.sector_size
        chunk = []
        fill = 0
        try:
            for lines, length, last in self._pending:
                if self._pos + fill + length > size:
                    self._program(chunk, fill)
                    chunk = []
                    fill = 0
                    self._advance()
                chunk.extend(lines)
                fill += length
                self._written = last
            self._program(chunk, fill)
            region.barrier()
        except BaseException:
            # Part of a line may be on flash: stop; the next open closes that sector.
            self._abandon()
            raise
        self._pending = []
        self._unsynced = 0
        self.durable_seq = self.seq

    def _program(self, chunk, fill):
        if chunk:
            self.region.program(self._ring[-1][0], self._pos, chunk)
            self._pos += fill
            self._ring[-1][3] += fill

    def _advance(self):
        """Start the next sector of the ring: retire it if it is the (covered) tail, erase it, head it."""
        region = self.region
        ring = self._ring
        index = (ring[-1][0] + 1) % region.sectors if ring else 0
        number = ring[-1][1] + 1 if ring else 1
        if self._redo:
            # The head holds only what a cut tore (no record): it is taken again, retired
            # first as a tail is, rather than a sector lost at every cut boot after boot.
            self._redo = False
            index, number = ring.pop()[:2]
            region.program(index, 0, b"\x00" * HEADER_MAX)
            region.barrier()
        elif len(ring) == region.sectors:
            # The tail. Zero its header first: from then on it never reads as in use,
            # whatever an interrupted erase leaves of it.
            region.program(index, 0, b"\x00" * HEADER_MAX)
            region.barrier()
            ring.pop(0)
        erases = self._erases[index]
        if erases is None:
            # Never used (0), or a cut between this sector's erase and its header lost the
            # count; then every other sector has one, and this one was the least worn.
            known = [e for e in self._erases if e is not None]
            erases = min(known) if len(known) == region.sectors - 1 else 0
        region.erase(index)
        region.barrier()
        self._erases[index] = erases + 1
        line = header_line(region, number, erases + 1, self._written)
        region.program(index, 0, line)
        # The header lands before any record: a write cache that completed a record's
        # program and not the header's would leave records in a sector not in use.
        region.barrier()
        ring.append([index, number, self._written, 0])
        self._pos = len(line)

    # -- state

    def wear(self):
        """(max, mean, max/mean) of the erase counts the sector headers record (unknown ones left out)."""
        with self._lock:
            known = [e for e in self._erases if e is not None] or [0]
        mean = sum(known) / len(known)
        return max(known), mean, (max(known) / mean if mean else 0.0)

    def _abandon(self):
        if self._live:
            self._live = False
            if self._finalizer is not None:
                self._finalizer()  # runs _let_go once, and never again at collection
            else:
                _let_go(self._owner)

    def close(self):
        """Program what is pending, then release the region. Closing twice is fine."""
        with self._lock:
            if not self._live:
                return
            try:
                self._sync()
            finally:
                self._abandon()

    @property
    def closed(self):
        return not self._live

    @property
    def size(self):
        """Bytes of records in the region (what minisnap calls a segment's active bytes)."""
        with self._lock:
            return sum(entry[3] for entry in self._ring)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check_blank(region, base_seq):
    """A region with no journal yet: refuse it if it holds data we did not write.
    Only sector 0 may hold written bytes: the first header, torn by a cut."""
    if region.reformat:
        for index in range(region.sectors):  # written over now, so that later opens need no flag
            if region.written_end(index):
                region.erase(index)
                region.barrier()
        return
    written = region.written_end(0)
    if written:
        # A torn first header: every written byte is a byte of the first header this open
        # writes, no more than partly programmed toward it (a cut leaves bits at 1, never
        # sets one): anything else, a file system's block say, is not ours.
        first = header_line(region, 1, 1, base_seq)
        if written <= len(first):
            data = region.read(0, 0, written)
            for i in range(written):
                if data[i] & first[i] != first[i]:
                    written = HEADER_MAX + 1
                    break
        else:
            written = HEADER_MAX + 1
        if written > HEADER_MAX:
            raise FormatError("%s: sector 0 holds data that is not a miniflash journal (erase the region, "
                              "or pass Region(..., reformat=True))" % region.name)
    for index in range(1, region.sectors):
        if region.written_end(index):
            raise FormatError("%s: sector %d holds data that is not a miniflash journal (erase the region, "
                              "or pass Region(..., reformat=True))" % (region.name, index))


def _torn_and_empty(reader):
    """Whether the head is torn with no record in it, not even an intact line of an
    incomplete batch, and a sector before it (so that taking it again leaves a journal)."""
    ring = reader.ring
    if reader.torn is None or len(ring) < 2 or ring[-1][3]:
        return False
    index = ring[-1][0]
    return reader.first_record(index, reader.region.written_end(index)) is None


def _check_free(reader):
    """The sectors not in use of a journal, before the writer may erase them: a cut leaves
    leftovers (a torn or retired header, a sector partly erased) only in the sector after
    the head, which the writer takes next. Records after a damaged header that continue
    the journal there, or any records after a damaged header elsewhere, are a header that
    rotted: CorruptRecord (taking the sector as free would lose them and reuse their seqs).
    Other written bytes in any other sector are not ours: FormatError, unless reformat."""
    region = reader.region
    ring = reader.ring
    after = (ring[-1][0] + 1) % region.sectors
    taken = [entry[0] for entry in ring]
    for index in range(region.sectors):
        used = 0 if index in taken else region.written_end(index)
        if not used:
            continue
        seq = reader.first_record(index, used)
        if seq is not None and (index != after or seq > reader.seq):
            raise CorruptRecord(region.name, 1, index * region.sector_size,
                                "sector %d holds records (seq %d) after a damaged sector header" % (index, seq))
        # Any other sector not in use is erased (or a retired header, zeros, before an erased rest).
        if index == after or (used <= HEADER_MAX and region.read(index, 0, used).count(b"\x00") == used):
            continue
        if region.reformat:
            region.erase(index)  # the owner said to write over it: now, so that later opens need no flag
            region.barrier()
        else:
            raise FormatError("%s: sector %d holds data that is not a miniflash journal (erase the sector, "
                              "or pass Region(..., reformat=True))" % (region.name, index))

