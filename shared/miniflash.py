# miniflash: a ministore journal written straight into a raw flash region.
# The on-flash format is specified in FORMAT.md, section 6 (format "miniflash", version 1).
#
# The region is a ring of erase sectors on a block device with the extended
# interface: readblocks(n, buf, off), writeblocks(n, buf, off) that programs
# without erasing, and ioctl(6, n) that erases (esp32.Partition, rp2.Flash, or
# Region below over a sub-range of either). A record is programmed into erased
# space only, so an append costs no erase; a sector is erased once per trip round
# the ring, and the ring spreads the erases evenly. Records are the sealed JSON
# lines of a ministore journal (FORMAT.md 2.2), so a raw dump shows JSONL.
import minishim as shim
from ministore import (MiniError, CorruptRecord, FormatError, LockedError, ClosedError, TornTail,
                       parse_line, seal, record_line, encode_json, is_int, HEADER, RECORD)

FORMAT_NAME = "miniflash"
FORMAT_VERSION = 1
HEADER_MAX = 192     # a sector header line is shorter; a sector holds at most sector_size - HEADER_MAX of records
_ERASED = 0xFF


class RegionFull(MiniError):
    """The next sector still holds records nothing covers: release(seq) them, or open with a retain= policy."""


class Region:
    """Sectors start..start+sectors-1 of a block device, and how the journal uses them.

    prog: the program unit. Every write is whole, aligned units, with 0xFF over the
    bytes not meant to change (NOR programming only clears bits, so 0xFF leaves them
    as they are): 256 suits the RP2040's page programs and every other NOR part.
    retain: None (a sector is reused only once release() covers its records) or a
    byte count: reuse the oldest sector whenever the newer ones keep at least that
    many bytes of records. reformat: write into a region that holds data which is
    not a miniflash journal (say, an old filesystem) instead of refusing it.
    """

    def __init__(self, device, start=0, sectors=None, prog=256, retain=None, reformat=False, name=None):
        self.device = device
        self.sector_size = device.ioctl(5, 0)
        total = device.ioctl(4, 0)
        if sectors is None:
            sectors = total - start
        if not is_int(start) or not is_int(sectors) or start < 0 or sectors < 2 or start + sectors > total:
            raise ValueError("a region needs 2 or more sectors inside the device's %d" % total)
        if not is_int(prog) or prog < 1 or self.sector_size % prog:
            raise ValueError("prog must divide the sector size %d" % self.sector_size)
        if retain is not None and (not is_int(retain) or retain < 0 or
                                   retain > (sectors - 2) * (self.sector_size - HEADER_MAX)):
            raise ValueError("retain must be None or 0..(sectors - 2) x (sector size - %d) bytes" % HEADER_MAX)
        self.start = start
        self.sectors = sectors
        self.prog = prog
        self.retain = retain
        self.reformat = reformat
        self.name = name or "flash sectors %d..%d" % (start, start + sectors - 1)

    def read(self, sector, offset, length):
        buf = bytearray(length)
        self.device.readblocks(self.start + sector, buf, offset)
        return bytes(buf)

    def program(self, sector, offset, data):
        """Program data at offset in a sector, as whole aligned prog units padded with 0xFF."""
        prog = self.prog
        first = offset - offset % prog
        end = offset + len(data)
        end += (prog - end % prog) % prog
        if first != offset or end != offset + len(data):
            buf = bytearray(b"\xff" * (end - first))
            buf[offset - first:offset - first + len(data)] = data
            data = buf
        self.device.writeblocks(self.start + sector, data, first)

    def erase(self, sector):
        self.device.ioctl(6, self.start + sector)

    def barrier(self):
        # The ops so far have completed (a no-op on esp32.Partition and rp2.Flash, whose
        # programs and erases are synchronous; block devices with a write cache flush it).
        self.device.ioctl(3, 0)


def as_region(region):
    return region if isinstance(region, Region) else Region(region)


def header_line(region, number, erases, base_seq):
    return seal(b'{"format":"%s","version":%d,"sector_size":%d,"sectors":%d,"number":%d,"erases":%d,"base_seq":%d' % (
        FORMAT_NAME.encode(), FORMAT_VERSION, region.sector_size, region.sectors, number, erases, base_seq))


def read_header(region, index):
    """(number, erases, base_seq, header length) of a sector in use, or None."""
    data = region.read(index, 0, HEADER_MAX)
    end = data.find(b"\n")
    if end < 0 or data[0] != 0x7B:  # "{": a retired header is all zero bytes
        return None
    kind, obj = parse_line(data[:end + 1])
    if kind != HEADER or obj.get("format") != FORMAT_NAME:
        return None
    if obj.get("version") != FORMAT_VERSION:
        raise FormatError("%s: sector %d: miniflash version %r is not supported (this code reads %d)" % (
            region.name, index, obj.get("version"), FORMAT_VERSION))
    if obj.get("sector_size") != region.sector_size or obj.get("sectors") != region.sectors:
        raise FormatError("%s: the journal was written for %r sectors of %r bytes, not %d of %d" % (
            region.name, obj.get("sectors"), obj.get("sector_size"), region.sectors, region.sector_size))
    values = (obj.get("number"), obj.get("erases"), obj.get("base_seq"))
    for value in values:
        if not is_int(value) or value < 0:
            raise CorruptRecord(region.name, 1, index * region.sector_size, "sector header of the wrong shape")
    return values + (end + 1,)


class FlashReader:
    """Iterates (seq, record) over a region, tail sector first, in one sector of memory.

    As ministore.JournalReader: `torn` (the head sector's unacknowledged tail, or None),
    `seq`, `base_seq`, `size` (record bytes read), `pads` (tails of older sectors that a
    crash cut short and a recovery closed), `lost` (always empty). `ring` lists the
    sectors in use, oldest first, as [index, number, base_seq, bytes used], `erases`
    the erase count of every sector (None where unknown), `head_end` the offset after
    the head sector's last record (None: the head takes no more records).
    """

    def __init__(self, region, from_seq=0, head_only=False):
        self.region = region = as_region(region)
        self.path = region.name
        self.torn = None
        self.pads = 0
        self.lost = []
        self.size = 0
        self.seq = self.base_seq = None
        self.head_end = None
        self.erases = [None] * region.sectors
        found = []
        for index in range(region.sectors):
            header = read_header(region, index)
            if header is not None:
                found.append((header[0], index, header))
                self.erases[index] = header[1]
        found.sort()
        self.ring = []
        self._headers = []
        for number, index, header in found:
            if self.ring:
                before = self.ring[-1]
                if number != before[1] + 1 or index != (before[0] + 1) % region.sectors:
                    raise CorruptRecord(self.path, 1, index * region.sector_size,
                                        "sector %d (number %d) does not follow sector %d (number %d) in the ring" % (
                                            index, number, before[0], before[1]))
            self.ring.append([index, number, header[2], 0])
            self._headers.append(header[3])
        if self.ring:
            self.base_seq = self.seq = self.ring[0][2]
        self._from = from_seq
        self._head_only = head_only
        self._items = self._generate()

    def __iter__(self):
        return self._items

    def __next__(self):
        return next(self._items)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def _generate(self):
        ring = self.ring
        last = len(ring) - 1
        for at in range(len(ring)):
            index, number, base, _ = ring[at]
            if at < last and (self._head_only or ring[at + 1][2] < self._from):
                self.seq = ring[at + 1][2]  # skipped: its records all come before what is wanted
                continue
            if at and base != self.seq:
                raise CorruptRecord(self.path, 1, index * self.region.sector_size,
                                    "sequence gap: sector %d starts after seq %d, but the journal before it "
                                    "ends at seq %d" % (index, base, self.seq))
            self.seq = base
            for item in self._sector(at, at == last):
                yield item

    def _sector(self, at, is_head):
        region = self.region
        index, number, base, _ = self.ring[at]
        data = region.read(index, 0, region.sector_size)
        where = index * region.sector_size  # offsets reported are bytes into the region
        pos = self._headers[at]
        line_no = 1
        expect = base + 1
        batch = []
        batch_left = 0
        batch_at = (0, 0)
        reason = None
        while pos < len(data) and data[pos] != _ERASED:
            end = data.find(b"\n", pos)
            if end < 0:
                reason = "incomplete line (no newline)"
                break
            line_no += 1
            kind, obj = parse_line(data[pos:end + 1])
            if kind is None:
                reason = obj
                break
            if kind != RECORD:
                raise CorruptRecord(self.path, line_no, where + pos,
                                    obj if isinstance(obj, str) else "not a record line in a flash sector")
            seq = obj["seq"]
            count = obj.get("batch", 1)
            if not is_int(seq) or not is_int(count) or count < 1 or "rec" not in obj:
                raise CorruptRecord(self.path, line_no, where + pos, "record line of the wrong shape")
            if seq != expect:
                raise CorruptRecord(self.path, line_no, where + pos,
                                    "sequence gap: expected seq %d, found %r" % (expect, seq))
            if batch_left and count != 1:
                raise CorruptRecord(self.path, line_no, where + pos, "batch starts inside a batch")
            expect += 1
            self.size += end + 1 - pos
            if count > 1:
                batch_left = count
                batch_at = (pos, line_no)
            if batch_left:
                batch.append((seq, obj["rec"]))
                batch_left -= 1
                if batch_left:
                    pos = end + 1
                    continue
                ready, batch = batch, []
            else:
                ready = ((seq, obj["rec"]),)
            self.seq = ready[-1][0]
            for item in ready:
                if item[0] >= self._from:
                    yield item
            pos = end + 1
        used = len(data.rstrip(b"\xff"))
        self.ring[at][3] = max(used, pos) - self._headers[at]
        if used > pos:
            # Written bytes that are not records: a program a crash cut short, or damage.
            # A crash can only leave them at the end: any intact line after them is damage.
            pieces = data[pos:used].split(b"\n")
            for i in range(1, len(pieces) - 1):
                if parse_line(pieces[i] + b"\n")[0] is not None:
                    raise CorruptRecord(self.path, line_no, where + pos, "%s (intact lines follow)" % (
                        reason or "erased bytes inside a line"))
        if batch:
            # Batches never cross sectors, so one open at the end of a sector was cut short.
            pos, line_no = batch_at
            reason = "incomplete batch at seq %d (%d of %d records)" % (batch[0][0], len(batch), len(batch) + batch_left)
        elif used <= pos:
            if is_head:
                self.head_end = pos
            return
        if is_head:
            self.torn = TornTail(where + pos, max(used, pos) - pos, line_no, reason or "erased bytes inside a line")
        else:
            self.pads += 1


class FlashStore:
    """A journal on a flash region, opened for appending. Use MiniStore.open(region) or FlashStore.open()."""

    def __init__(self, region, sync_every, reader, seq):
        self.region = region
        self.path = region.name
        self.sync_every = sync_every
        self.seq = self.durable_seq = seq
        self._written = seq  # last seq programmed
        self._ring = reader.ring
        self._erases = reader.erases
        self._released = -1
        self._pending = []   # (line bytes, last seq) of records not yet programmed
        self._unsynced = 0
        self._pos = region.sector_size if reader.head_end is None else reader.head_end
        self._key = _key(region)
        self.size = 0
        for entry in self._ring:
            self.size += entry[3]

    @staticmethod
    def open(region, sync="always", base_seq=0, replay=None):
        """Open the journal in `region` (a Region or a block device); see MiniStore.open."""
        region = as_region(region)
        if sync == "always":
            sync_every = None
        elif is_int(sync) and sync >= 1:
            sync_every = sync
        else:
            raise ValueError('sync must be "always" or an int >= 1, not %r' % (sync,))
        if not is_int(base_seq) or base_seq < 0:
            raise ValueError("base_seq must be a non-negative int")
        key = _key(region)
        if key in shim._held:
            raise LockedError("%s is already open for writing (one writer at a time)" % region.name)
        shim._held[key] = True
        try:
            # The writer needs only the head sector; a replay reads (and checks) them all.
            reader = FlashReader(region, head_only=replay is None and region.retain is None)
            for seq, record in reader:
                if replay is not None:
                    replay(seq, record)
            if not reader.ring:
                _check_blank(region)
                return FlashStore(region, sync_every, reader, base_seq)
            return FlashStore(region, sync_every, reader, reader.seq)
        except BaseException:
            del shim._held[key]
            raise

    @staticmethod
    def stream(region, from_seq=0):
        return FlashReader(region, from_seq)

    # -- writing

    def append(self, record):
        """Append one record; return its seq. Durable when this returns under sync="always"."""
        return self._append_encoded([encode_json(record)])

    def append_many(self, records):
        """Append records as one atomic batch with one program; return the last seq."""
        return self._append_encoded([encode_json(r) for r in records])

    def _append_encoded(self, bodies):
        if self.region is None:
            raise ClosedError("%s is closed" % self.path)
        count = len(bodies)
        if count == 0:
            return self.seq
        lines = [record_line(self.seq + 1, bodies[0], count)]
        for i in range(1, count):
            lines.append(record_line(self.seq + 1 + i, bodies[i]))
        data = b"".join(lines)
        room = self.region.sector_size - HEADER_MAX
        if len(data) > room:
            raise ValueError("%d bytes of record lines do not fit in one sector (at most %d)" % (len(data), room))
        if not self._fits(len(data)):
            raise RegionFull("%s: the oldest sector still holds records nothing released (release(seq) them, "
                             "or open with Region(..., retain=BYTES))" % self.path)
        self.seq += count
        self._pending.append((data, self.seq))
        self._unsynced += count
        if self.sync_every is None or self._unsynced >= self.sync_every:
            self.sync()
        return self.seq

    def release(self, seq):
        """Records up to `seq` are no longer needed (a snapshot, or acks, cover them): their
        sectors may be erased for reuse. Kept in memory only: call it again after a reopen."""
        if seq > self._released:
            self._released = seq

    def _fits(self, length):
        """Whether the pending records plus `length` bytes find room without a RegionFull."""
        size = self.region.sector_size
        at = self._pos
        need = 0
        lengths = [len(data) for data, _ in self._pending]
        lengths.append(length)
        for n in lengths:
            if at + n > size:
                need += 1
                at = HEADER_MAX
            at += n
        return need <= self._spare()

    def _spare(self):
        """Sectors the writer may take: the free ones, then the oldest ones that are covered."""
        ring = self._ring
        spare = self.region.sectors - len(ring)
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
        region = self.region
        if region is None:
            raise ClosedError("%s is closed" % self.path)
        if not self._pending:
            return
        size = region.sector_size
        chunk = []
        fill = 0
        try:
            for data, last in self._pending:
                if self._pos + fill + len(data) > size:
                    self._program(chunk, fill)
                    chunk = []
                    fill = 0
                    self._advance()
                chunk.append(data)
                fill += len(data)
                self._written = last
            self._program(chunk, fill)
            region.barrier()
        except OSError:
            # Part of a line may be on flash: the next open closes that sector.
            self._abandon()
            raise
        self._pending = []
        self._unsynced = 0
        self.durable_seq = self.seq

    def _program(self, chunk, fill):
        if chunk:
            self.region.program(self._ring[-1][0], self._pos, b"".join(chunk))
            self._pos += fill
            self._ring[-1][3] += fill
            self.size += fill

    def _advance(self):
        """Start the next sector of the ring: retire it if it is the (covered) tail, erase it, head it."""
        region = self.region
        ring = self._ring
        index = (ring[-1][0] + 1) % region.sectors if ring else 0
        number = ring[-1][1] + 1 if ring else 1
        if len(ring) == region.sectors:
            # The tail. Zero its header first: from then on it never reads as in use,
            # whatever an interrupted erase leaves of it.
            region.program(index, 0, b"\x00" * self._header_len(index))
            region.barrier()
            self.size -= ring.pop(0)[3]
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
        ring.append([index, number, self._written, 0])
        self._pos = len(line)

    def _header_len(self, index):
        return self.region.read(index, 0, HEADER_MAX).find(b"\n") + 1

    # -- state

    def wear(self):
        """(max, mean, max/mean) of the erase counts the sector headers record (unknown ones left out)."""
        known = [e for e in self._erases if e is not None]
        if not known:
            return 0, 0.0, 0.0
        mean = sum(known) / len(known)
        return max(known), mean, (max(known) / mean if mean else 0.0)

    def _abandon(self):
        if self.region is not None:
            self.region = None
            shim._held.pop(self._key, None)

    def close(self):
        if self.region is None:
            return
        try:
            self.sync()
        finally:
            self._abandon()

    @property
    def closed(self):
        return self.region is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _key(region):
    return "miniflash:%d:%d" % (id(region.device), region.start)


def _check_blank(region):
    """A region with no journal yet: refuse it if it holds data we did not write.

    Only sector 0 may hold non-erased bytes (the first sector's header, torn by a cut).
    """
    if region.reformat:
        return
    for index in range(1, region.sectors):
        data = region.read(index, 0, region.sector_size)
        if len(data.rstrip(b"\xff")):
            raise FormatError("%s: sector %d holds data that is not a miniflash journal (erase the region, "
                              "or pass Region(..., reformat=True))" % (region.name, index))
