# miniregion: a raw flash region as miniflash uses it (FORMAT.md 6): the sectors of a
# block device with the extended interface, the writers' registry of the flash bytes
# they cover, the sector header, and the reader of the ring of sectors. miniflash (the
# writer, FlashStore) re-exports what applications use from here.
import minishim as shim
from ministore import (MiniError, CorruptRecord, FormatError, LockedError, TornTail, parse_line, seal, is_int,
                       length_of, HEADER, RECORD)

FORMAT_NAME = "miniflash"
FORMAT_VERSION = 1
HEADER_MAX = 192     # a sector header line is shorter; a sector holds at most sector_size - HEADER_MAX of records
_ERASED = 0xFF
_UNIT = 512          # bytes a program() copies at a time
_WINDOW = 256        # bytes a reader reads at a time (FlashReader._line)


class FellBehind(MiniError):
    """A reader beside the writer (it takes no lock) lost its place: the writer reused a
    sector the reader had not finished. The journal is sound: read it again."""


class Region:
    """Sectors start..start+sectors-1 of a block device, and how the journal uses them.

    prog: every program is whole aligned units of prog bytes, 0xFF over the bytes that
    must not change (a NOR program only clears bits): 256 suits RP2040 pages and any NOR.
    retain: None (reuse a sector only once release() covers its records) or bytes: reuse
    the oldest sector when the newer ones keep at least that many bytes of records.
    reformat: write over data that is not a miniflash journal instead of refusing it."""

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
        # Two sectors in a row hold more than sector size - HEADER_MAX bytes of records (the
        # batch that did not fit in the first went to the second): the sectors after the
        # tail always reach that much, unless cuts tore them (FORMAT.md 6.4).
        if retain is not None and (not is_int(retain) or retain < 0 or
                                   retain > (sectors - 1) // 2 * (self.sector_size - HEADER_MAX)):
            raise ValueError("retain must be None or 0..(sectors - 1) // 2 x (sector size - %d) bytes" % HEADER_MAX)
        self.start = start
        self.sectors = sectors
        self.prog = prog
        self.retain = retain
        self.reformat = reformat
        self.name = name or "flash sectors %d..%d" % (start, start + sectors - 1)
        flash, first = _where(device)
        first += start * self.sector_size
        # Its writer's entry in the lock registry (minishim._held): the bytes it covers.
        self.key = ("miniflash", flash, first, first + sectors * self.sector_size)

    def read(self, sector, offset, length):
        buf = bytearray(length)
        self.device.readblocks(self.start + sector, buf, offset)
        return bytes(buf)

    def read_into(self, sector, offset, buf):
        self.device.readblocks(self.start + sector, buf, offset)

    def program(self, sector, offset, data):
        """Program data (bytes, or a list of pieces: their concatenation) at offset in a
        sector, as whole aligned prog units with 0xFF over the bytes around it. Through
        one buffer of at most _UNIT bytes (or one prog unit): a sector's batch is never
        joined or copied whole, which a 128 KB board's heap may hold no block for. A
        barrier follows each piece but the last, so that a cut leaves a prefix of the
        data, as of one program, whatever order a device's cache completes them in."""
        prog = self.prog
        pieces = data if isinstance(data, list) else [data]
        end = offset + length_of(pieces)
        first = offset - offset % prog
        last = end + (prog - end % prog) % prog
        if first == offset and last == end and len(pieces) == 1:  # aligned: as it is
            self.device.writeblocks(self.start + sector, pieces[0], offset)
            return
        size = min(last - first, prog * max(1, _UNIT // prog))
        buf = bytearray(b"\xff" * size)
        at = first  # where buf goes in the sector
        fill = offset - first
        for piece in pieces:
            view = memoryview(piece)
            done = 0
            while done < len(piece):
                take = min(len(piece) - done, size - fill)
                buf[fill:fill + take] = view[done:done + take]
                fill += take
                done += take
                if fill == size:
                    self.device.writeblocks(self.start + sector, buf, at)
                    at += size
                    fill = 0
                    if at < last:
                        self.barrier()
        if fill:
            tail = fill + (prog - fill % prog) % prog
            if at != first:  # the buffer went out whole before: what follows the data is stale
                buf[fill:tail] = b"\xff" * (tail - fill)
            self.device.writeblocks(self.start + sector, buf if tail == size else buf[:tail], at)

    def written_end(self, sector, start=0, buf=None):
        """Where the written bytes of a sector end (its erased 0xFF tail begins), not
        before start: 0 for an erased sector. Read from the sector's end, len(buf) bytes
        at a time (a _WINDOW-byte buffer if none is given), and a smaller bytearray of
        its own for what is left (a device gets a bytearray, as from LittleFS)."""
        if buf is None:
            buf = bytearray(_WINDOW)
        end = self.sector_size
        while end > start:
            n = min(len(buf), end - start)
            window = buf if n == len(buf) else bytearray(n)
            self.read_into(sector, end - n, window)
            kept = len(window.rstrip(b"\xff"))
            if kept:
                return end - n + kept
            end -= n
        return start

    def erase(self, sector):
        self.device.ioctl(6, self.start + sector)

    def barrier(self):
        # The ops so far have completed (a no-op on esp32.Partition and rp2.Flash, whose
        # programs and erases are synchronous; block devices with a write cache flush it).
        self.device.ioctl(3, 0)


def _where(device):
    """(which flash, byte offset) of a block device's first block, so that two objects
    on the same flash are known as one: an esp32.Partition tells its address (info());
    a SubDevice is where its device is, plus its start. Any other device is its own flash."""
    if isinstance(device, SubDevice):
        flash, first = _where(device.device)
        return flash, first + device.start * device.block_size
    info = getattr(device, "info", None)
    if info is not None:
        try:
            found = info()  # esp32.Partition: (type, subtype, address, size, label, encrypted)
        except Exception:  # another device's info(), of another meaning: not a partition
            found = None
        if isinstance(found, tuple) and len(found) == 6 and is_int(found[2]):
            return "partitions", found[2]
    return id(device), 0


def _hold(region, owner):
    """Enter the region in the writers' registry as `owner` (the opener's [key] list), or
    LockedError if a writer holds any of its bytes."""
    key = region.key
    with shim._held_lock:  # two threads opening at once: one of them wins
        # list(): a finalizer (CPython) that the collector runs in this thread may change it
        taken = [k for k in list(shim._held) if isinstance(k, tuple) and k[0] == "miniflash" and k[1] == key[1] and
                 k[2] < key[3] and key[2] < k[3]]
        if not taken:
            shim._held[key] = owner
    if taken:
        raise LockedError("%s is already open for writing (one writer at a time)" % region.name)


def _let_go(owner):
    """Undo _hold: only the entry `owner` made (an open interrupted before its _hold, or
    a writer's finalizer after its close, never removes another writer's)."""
    with shim._held_lock:
        if shim._held.get(owner[0]) is owner:
            del shim._held[owner[0]]


def as_region(region):
    if not isinstance(region, Region) and not hasattr(region, "ioctl"):
        raise TypeError("a journal is a path (str) or a flash block device, not %r" % (region,))
    return region if isinstance(region, Region) else Region(region)


class SubDevice:
    """Blocks start..start+count-1 of a block device as a block device of their own, with
    the extended interface: LittleFS on part of a partition and the journal on the rest
    (ESP32), or a region where rp2.Flash takes no start=/len=. No block outside is touched."""

    def __init__(self, device, start, count):
        if not is_int(start) or not is_int(count) or start < 0 or count < 1 or start + count > device.ioctl(4, 0):
            raise ValueError("blocks %r..+%r are not inside the device" % (start, count))
        self.device = device
        self.start = start
        self.count = count
        self.block_size = device.ioctl(5, 0)

    def _block(self, block, end):
        if block < 0 or block * self.block_size + end > self.count * self.block_size:
            raise ValueError("block %d is outside this sub-device" % block)
        return self.start + block

    def readblocks(self, block, buf, offset=0):
        self.device.readblocks(self._block(block, offset + len(buf)), buf, offset)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:  # the simple interface: whole blocks, erased first
            self.device.writeblocks(self._block(block, len(buf)), buf)
        else:
            self.device.writeblocks(self._block(block, offset + len(buf)), buf, offset)

    def ioctl(self, op, arg):
        if op == 4:
            return self.count
        return self.device.ioctl(op, self._block(arg, 1) if op == 6 else arg)


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
    if kind != HEADER or not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        return None
    if obj.get("version") != FORMAT_VERSION:
        raise FormatError("%s: sector %d: miniflash version %r is not supported (this code reads %d)" % (
            region.name, index, obj.get("version"), FORMAT_VERSION))
    if obj.get("sector_size") != region.sector_size or obj.get("sectors") != region.sectors:
        raise FormatError("%s: the journal was written for %r sectors of %r bytes, not %d of %d" % (
            region.name, obj.get("sectors"), obj.get("sector_size"), region.sectors, region.sector_size))
    values = (obj.get("number"), obj.get("erases"), obj.get("base_seq"))
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CorruptRecord(region.name, 1, index * region.sector_size, "sector header of the wrong shape")
    # The writer puts sector number n at index (n - 1) % sectors (the ring starts at 0),
    # so a number elsewhere says the region starts at another sector than it did.
    number = values[0]
    if isinstance(number, int) and (number - 1) % region.sectors != index:  # (an int: checked above)
        raise FormatError("%s: sector %d holds the journal's sector number %d, which belongs at sector %d: "
                          "the region was written at another start (%d sectors earlier, modulo %d)" % (
                              region.name, index, number, (number - 1) % region.sectors,
                              (number - 1 - index) % region.sectors, region.sectors))
    return values + (end + 1,)


class FlashReader:
    """Iterates (seq, record) over a region, oldest sector first, in the heap of its
    longest line (a sector is read a window of _WINDOW bytes at a time).

    As ministore.JournalReader: `torn` (the head sector's unacknowledged tail), `seq`,
    `base_seq`, `size`, `pads` (older sectors whose tail a crash cut), `lost` (empty).
    `line` is the line of the record just yielded; `ring` the sectors in use, oldest
    first, as [index, number, base_seq, record bytes]; `erases` every sector's erase
    count (None: unknown); `head_end` where the next record goes (None: a new sector)."""

    def __init__(self, region, from_seq=0, head_only=False):
        self.region = region = as_region(region)
        self.path = region.name
        self.torn = None
        self.pads = 0
        self.lost = []
        self.size = 0
        self.seq = self.base_seq = None
        self.head_end = self.line = None
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
        self._window = None
        self._items = self._generate()

    def __iter__(self):
        return self._items

    def __next__(self):
        return next(self._items)

    def __enter__(self):  # as JournalReader's, so `with MiniStore.stream(x)` reads either
        return self

    def __exit__(self, *exc):
        pass

    def close(self):  # as JournalReader's: a region holds no file open
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
                raise self._corrupt(at, 1, index * self.region.sector_size,
                                    "sequence gap: sector %d starts after seq %d, but the journal before it "
                                    "ends at seq %d" % (index, base, self.seq))
            self.seq = base
            for item in self._sector(at, at == last):
                yield item
        if ring and self.seq is not None:
            # The sector after the head: records there that continue the journal after a
            # header that does not read are a head whose header rotted, not free space.
            index = (ring[-1][0] + 1) % self.region.sectors
            used = 0 if len(ring) == self.region.sectors else self.region.written_end(index)
            if used and self.first_record(index, used) == self.seq + 1 and read_header(self.region, index) is None:
                raise CorruptRecord(self.path, 1, index * self.region.sector_size,
                                    "sector %d holds records (seq %d) after a damaged sector header" % (
                                        index, self.seq + 1))

    def _sector(self, at, is_head):
        index, number, base, _ = self.ring[at]
        size = self.region.sector_size
        where = index * size  # offsets reported are bytes into the region
        pos = self._headers[at]
        line_no = 1
        expect = base + 1
        batch = []      # (seq, record, line) of a batch not yet complete
        left = 0        # its lines still to come
        batch_at = (0, 0)
        reason = None
        while True:
            while pos < size:
                line, end = self._line(index, pos)
                if line is None:
                    if end:
                        reason = "incomplete line (no newline)"
                    break
                kind, obj = parse_line(line)
                if kind is None:
                    reason = obj
                    break
                line_no += 1
                if kind != RECORD or not isinstance(obj, dict):
                    raise self._corrupt(at, line_no, where + pos, obj if isinstance(obj, str) else "not a record")
                seq = obj["seq"]
                count = obj.get("batch", 1)
                if not is_int(seq) or not is_int(count) or count < 1 or "rec" not in obj or (left and count != 1):
                    raise self._corrupt(at, line_no, where + pos, "record line of the wrong shape")
                if seq != expect:
                    raise self._corrupt(at, line_no, where + pos,
                                        "sequence gap: expected seq %d, found %r" % (expect, seq))
                expect += 1
                self.size += end - pos
                if count > 1:
                    left = count
                    batch_at = (pos, line_no)
                batch.append((seq, obj["rec"], line))
                pos = end
                left = left - 1 if left else 0
                if left:
                    continue
                self.seq = seq
                for item in batch:
                    if item[0] >= self._from:
                        self.line = item[2]
                        yield item[0], item[1]
                batch = []
            used = self.region.written_end(index, pos, self._window)
            # Written bytes that are not records: a program a crash cut short, or damage.
            # A crash leaves them only in the page it cut, the last written: an intact line
            # after a damaged line that ends before that page is damage.
            if used <= pos or not self._intact_line_in(index, pos, used):
                break
            # Unless a writer beside this reader (it takes no lock) programmed them since it
            # stopped at pos: it programs in order, so the line at pos is whole by now.
            line = self._line(index, pos)[0] if is_head else None
            if line is None or parse_line(line)[0] != RECORD:
                if self._newline(index, pos, used) >= self._last_page(used):
                    break  # a cut page program left scattered (NOR programs a page's bits in parallel)
                raise self._corrupt(at, line_no, where + pos, "%s (intact lines follow)" % (
                    reason or "erased bytes inside a line"))
            reason = None
        self.ring[at][3] = pos - self._headers[at]  # record bytes, for the retain policy
        if batch:
            # Batches never cross sectors, so one open at the end of a sector was cut short.
            pos, line_no = batch_at
            reason = "incomplete batch at seq %d (%d of %d records)" % (batch[0][0], len(batch), len(batch) + left)
        elif used <= pos:
            if is_head:
                self.head_end = pos
            return
        if is_head:
            self.torn = TornTail(where + pos, max(used, pos) - pos, line_no, reason or "erased bytes inside a line")
        else:
            self.pads += 1

    def _corrupt(self, at, line_no, offset, reason):
        """CorruptRecord at a place in ring[at], or FellBehind if a writer beside this reader
        has since reused one of the sectors up to there (its header gone or renumbered)."""
        for entry in self.ring[:at + 1]:
            header = read_header(self.region, entry[0])
            if header is None or header[0] != entry[1]:
                return FellBehind("%s: sector %d was reused by the writer while this reader was at seq %r: "
                                  "read again" % (self.path, entry[0], self.seq))
        return CorruptRecord(self.path, line_no, offset, reason)

    def _last_page(self, used):
        """Where the flash page that holds a sector's last written byte starts. NOR flash
        programs a page (256 bytes; a prog unit, if larger) at a time, its bits in
        parallel, and the pages of a program in order, so a cut leaves any mix of
        programmed and erased bits in one page, the last written: a damaged line that
        ends there may come before intact lines of that same page (FORMAT.md 6.2)."""
        page = max(256, self.region.prog)
        return (used - 1) - (used - 1) % page

    # A sector is read _WINDOW bytes at a time into one buffer, and each line on its
    # own: a reader needs the heap of its longest line, not of a sector (a 128 KB
    # board's heap may hold no 4 KB block).

    def _window_at(self, index, start, stop):
        """Bytes start..min(stop, start + _WINDOW) of a sector, in the window (or, fewer
        than _WINDOW, in a buffer of their own: a device gets a bytearray, as from LittleFS)."""
        n = min(_WINDOW, stop - start)
        window = self._window
        if window is None:
            window = self._window = bytearray(_WINDOW)
        if n < _WINDOW:
            window = bytearray(n)
        self.region.read_into(index, start, window)
        return window

    def _line(self, index, pos):
        """(line, end) of the line at pos of a sector: (None, 0) at erased bytes, (None,
        end of the sector) for written bytes with no newline before its end."""
        size = self.region.sector_size
        window = self._window_at(index, pos, size)
        if window[0] == _ERASED:
            return None, 0
        found = window.find(b"\n")
        if found >= 0:
            return bytes(memoryview(window)[:found + 1]), pos + found + 1
        found = self._newline(index, pos + len(window), size)
        if found < 0:
            return None, size
        return self.region.read(index, pos, found + 1 - pos), found + 1

    def _intact_line_in(self, index, start, stop):
        """Whether a whole intact line lies in bytes start..stop of a sector, after its
        first newline (what comes before that is the damaged line's)."""
        first = self._newline(index, start, stop)
        while first >= 0:
            after = self._newline(index, first + 1, stop)
            if after < 0:
                return False
            if parse_line(self.region.read(index, first + 1, after - first))[0] is not None:
                return True
            first = after
        return False

    def first_record(self, index, used):
        """The seq of the first intact record line after the first newline in bytes 0..used of a sector, or None."""
        at = self._newline(index, 0, used)
        while at >= 0:
            end = self._newline(index, at + 1, used)
            if end < 0:
                return None
            kind, obj = parse_line(self.region.read(index, at + 1, end - at))
            if kind == RECORD and isinstance(obj, dict) and is_int(obj.get("seq")):
                return obj["seq"]
            at = end
        return None

    def _newline(self, index, start, stop):
        """Where the first newline in bytes start..stop of a sector is, or -1."""
        while start < stop:
            window = self._window_at(index, start, stop)
            found = window.find(b"\n")
            if found >= 0:
                return start + found
            start += len(window)
        return -1
