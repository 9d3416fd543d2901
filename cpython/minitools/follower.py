"""`mini tail`'s follower: polls a journal (or a directory of segments) on the device
and turns the new bytes into records with the core's one journal reader
(ministore.JournalReader, fed line by line), so that tail shows exactly what a reader
would accept: a batch only once it is whole, seqs in order, damage reported.

-n N starts with the last N records, found by reading back from each file's end until
the window holds N whole records (or the journal has no more): record sizes and pads
(LittleFS block-end pads, up to a block) make any guess from N alone wrong. The window
is exactly N records, as tail -n is; when its first ones are the end of an atomic batch,
stderr says so (which batch, how many of it are not shown): never the end of a batch
shown as if it were all of it. A file is checked on its header line when first seen,
even when tail reads it from the middle: not a journal is an error (NotJournal), as for
`mini cat`. A file that appears after the first poll is read from its first record.

A file tail follows may be another one at the next poll, or the same one cut short:
- another inode (where the device's file system has them: not LittleFS or FAT) is
  another file, read from its start;
- else, its first bytes, or the bytes before where tail reads on, changed while it did
  not shrink: another file too (removed and created again), read from its start;
- one that shrank (or, same inode, was written over) is read on from the last line end
  (of a record, a batch or the header) up to which it still holds the bytes tail read:
  the device computes the CRC-32 of its bytes up to each of the last places tail kept,
  and every record after the last one that matches is printed, whatever its seq (the
  records printed before from beyond it are no longer in the file, and stderr says so).
  A journal cut short (a power cut that lost what was not synced) is not printed again,
  and the records that took the lost ones' seqs are printed; one removed and created
  again smaller, its header the same bytes, is printed from its header on. Where there
  are no inodes (or the new file was given the old one's inode number again), a file
  created again whose first records are byte for byte the old one's cannot be told
  from the old one cut short: it is read on after them.
"""
import binascii
import io
import json
import sys
from collections import deque

from miniformat import MAX_LINE, check_header, parse_line
from ministore import FormatError, JournalReader, MiniError

from minitools import dump
from minitools.follower_device import SUM_CODE as _SUM_CODE, TAIL_CODE as _TAIL_CODE
from minitools.mpremote_link import PREFIX, DeviceError, device_eval, remote_path as _remote

PIECE = 16 * 1024  # bytes one exchange reads (the device hexlifies them: its heap holds about 4 times that)
HEAD = 256         # a file's first bytes, sent at each poll: its header line, and whether it is the same file
MARK = 32          # the bytes before where a file is read on: still the file tail read, not a new one
LONGEST_HEAD = 2 * MAX_LINE + HEAD  # a damaged header is judged by the line after it (FORMAT.md 2.1, rule 4)
NO_SEGMENTS = "no journal segments (journal-NNNNNNNN.jsonl)"
POINTS = 4096      # the places kept per file where tail could read on after the file shrank


class NotJournal(DeviceError):
    """A file that is not a ministore journal: one line, exit 2, with --follow too
    (waiting would not make it one)."""


class Missing(FileNotFoundError):
    """Nothing to read yet: `error` for a single poll, `waiting` to say once with --follow."""

    def __init__(self, error, waiting):
        FileNotFoundError.__init__(self, error)
        self.error = error
        self.waiting = waiting


class _Warn:
    """The reader's reporter: damage is said on stderr, and tail goes on."""

    def __init__(self, name, start, err):
        self.name = name
        self.start = start
        self.err = err

    def report(self, kind, line, offset, length, reason, lost):
        lost_text = "" if not lost else "; seq %d..%d will not be shown" % lost
        self.err.write("mini tail: %s: %s at byte %d: %s%s\n" % (
            self.name, "damaged region" if kind == "corrupt" else kind, self.start + offset, reason, lost_text))


class Follower:
    """Polls a journal (or a directory of segments) on the device and turns new bytes into records."""

    def __init__(self, port, journal, lines, raw, out=None, err=None):
        self.port = port
        self.journal = _remote(journal)
        self.lines = lines
        self.raw = raw
        self.offsets = {}      # device file -> offset after its last complete line
        self.readers = {}      # device file -> the JournalReader its lines are pushed into
        self.resync = set()    # files read from the middle of a line: skip to the next newline
        self.heads = {}        # device file -> its first bytes (up to HEAD)
        self.marks = {}        # device file -> the bytes just before its offset
        self.shown = {}        # device file -> the last seq printed from it
        self.checked = set()   # files whose whole first line passed check_header
        self.idents = {}       # device file -> (device, inode), where its file system has inodes
        self.sums = {}         # device file -> (where tail began reading it, CRC-32 from there to its offset)
        self.points = {}       # device file -> (line end, that CRC-32 up to it, last seq) of its last lines
        self.firsts = {}       # ... that closed a record or a batch (or the header), and the first of them
        self._ends = []        # those of the last _lines call: (line end, last seq, records it closed)
        self.torn_heads = set()  # ... and was a damaged header, with lines after it
        self.budget = PIECE
        self.first = True      # no answer from the device yet: -n applies to what the first one lists
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def poll(self, evaluate=None):
        """One exchange with the device (a few when a window or a header needs more bytes);
        returns True if more bytes are waiting.

        evaluate(code) runs the code on the device and returns the value it prints
        (a DeviceSession's eval); by default, one `mpremote exec` of its own."""
        ask = evaluate if evaluate is not None else (lambda code: device_eval(self.port, code))
        windowed = self.first and self.lines >= 0
        answer = self._ask(ask, {name: [offset, -1] for name, offset in self.offsets.items()}, not windowed)
        if answer is None:
            self._forget_all()  # when it appears again, it is a new file
            self.first = False
            raise Missing("%s: no such file or directory on the device" % self.journal,
                          "waiting for %s to appear" % self.journal)
        files = [(name, size, bytes.fromhex(head), start, bytes.fromhex(mark), bytes.fromhex(data),
                  (dev, ino) if ino else None) for name, size, head, start, mark, data, ino, dev in answer[1]]
        seen = set(item[0] for item in files)
        for name in list(self.heads):
            if name not in seen:
                self._forget(name)  # compacted away, or removed
        if not files:  # a directory (a file lists itself)
            self.first = False
            raise Missing("%s: %s here" % (self.journal, NO_SEGMENTS),
                          "%s holds %s: waiting for the journal to appear" % (self.journal, NO_SEGMENTS))
        more = moved = False
        placed = []
        for name, size, head, start, mark, data, ident in files:
            if name in self.offsets and self._changed(ask, name, size, head, mark, ident):
                more = True  # read it again at once, from its start or from where it is still the same
                continue
            if ident is not None:
                self.idents.setdefault(name, ident)
            self._check(ask, name, size, head)
            if len(head) > len(self.heads.get(name, b"")):
                self.heads[name] = head
            if start < 0:  # the first poll: where to start is chosen below
                placed.append((name, size))
                continue
            offset = self._take(name, start, mark, data)
            moved = moved or offset > start
            more = more or start + len(data) < size
        if placed:
            self._place(ask, placed)
        self.first = False
        # a line longer than what one poll reads: read more at once next time
        self.budget = min(self.budget * 2, 1 << 20) if more and not moved else PIECE
        return more

    def _ask(self, ask, reqs, new0, only=False, budget=None):
        return ask(_TAIL_CODE % (PREFIX, self.journal, json.dumps(reqs), new0, only,
                                 self.budget if budget is None else budget, HEAD, MARK))

    def _fetch(self, ask, name, start, stop):
        """(the MARK bytes before start, the bytes start..stop) of one file, in pieces."""
        mark, got = None, b""
        while start + len(got) < stop:
            answer = self._ask(ask, {name: [start + len(got), stop]}, False, True, PIECE)
            found = [item for item in (answer or [0, []])[1] if item[0] == name and item[3] >= 0]
            piece = bytes.fromhex(found[0][5]) if found else b""
            if mark is None and found:
                mark = bytes.fromhex(found[0][4])
            if not piece:
                break  # the file shrank meanwhile: the next poll sees it
            got += piece
        return mark or b"", got

    # ------------------------------------------------------------ which file is it

    def _check(self, ask, name, size, head):
        """NotJournal unless the file's first line is a ministore header (or a damaged
        one of ours), checked even when tail reads the file from the middle."""
        if name in self.checked:
            return
        text = head
        while True:
            end1 = text.find(b"\n") + 1
            end2 = text.find(b"\n", end1) + 1 if end1 else 0
            longer = len(text) < size and len(text) < LONGEST_HEAD
            # a damaged first line is judged by the sealed line after it (FORMAT.md 2.1)
            if longer and (not end1 or (not end2 and parse_line(text[:end1])[0] is None)):
                fetched = self._fetch(ask, name, 0, min(size, LONGEST_HEAD, 4 * len(text) + 4096))[1]
                if len(fetched) > len(text):
                    text = fetched
                    continue
            break
        line1 = text[:end1] if end1 else text
        line2 = text[end1:end2 or len(text)] if end1 else b""
        try:
            base = check_header(name, line1, lambda: line2)
        except FormatError as exc:
            raise NotJournal(str(exc))
        if end1:  # else the file is a header being written: checked again when it has grown
            self.checked.add(name)
            if base is None:
                self.torn_heads.add(name)

    def _changed(self, ask, name, size, head, mark, ident):
        """Whether a file tail reads is another one now, or shrank, or was written over: then
        it is read again, from its start (another file) or from the last place where it is
        still what tail read (_resume).

        Another file: its inode differs, where the device's file system has inodes. Where it
        has none (LittleFS, FAT), a file whose first bytes, or the bytes before where tail
        reads on, changed while it did not shrink is taken for another one; one that shrank
        is looked at by its content (_resume): one removed and created again smaller, whose
        records are new, is read from its header, one cut short from where it is still the same."""
        old_ident = self.idents.get(name)
        if ident is not None and old_ident is not None and ident != old_ident:
            return self._new_file(name, "removed and created again: another inode")
        old = self.heads.get(name, b"")
        common = min(len(old), len(head))
        shrank = size < self.offsets[name]
        head_changed = old[:common] != head[:common]
        rewritten = not shrank and mark != self.marks.get(name, mark)
        if not (shrank or head_changed or rewritten):
            return False
        if (head_changed or rewritten) and (ident is None or ident != old_ident):
            return self._new_file(name, "removed and created again")
        return self._resume(ask, name, size, head, shrank)

    def _new_file(self, name, why):
        self.err.write("mini tail: %s is a new file (%s): reading it from its start\n" % (name, why))
        self._forget(name)
        return True

    def _resume(self, ask, name, size, head, shrank):
        """Read on from the last line end (of a record, a batch or the header) up to which the
        file still holds the bytes tail read (their CRC-32, computed on the device), printing
        every record after it: those printed before from beyond it are no longer in the file,
        and the records there now, with the same seqs or not, are new. None: from its start."""
        begin = self.sums.get(name, (0, 0))[0]
        limit = min(size, self.offsets[name])
        places = [point for point in self.points.get(name, ()) if point[0] <= limit]
        picked, step, k = [], 1, len(places) - 1
        while k >= 0:  # the last 32, then further back by doubling steps: one exchange either way
            picked.append(places[k])
            step *= 2 if len(picked) >= 32 else 1
            k -= step
        first = self.firsts.get(name)
        if first is not None and first[0] <= limit:
            picked.append(first)
        picked = sorted(set(picked))
        sums = ask(_SUM_CODE % (PREFIX, name, begin, json.dumps([end for end, _, _ in picked]))) if picked else []
        found = None
        for point, crc in zip(picked, sums or []):
            if crc == point[1]:
                found = point
        what = "shrank to %d bytes" % size if shrank else "was written over (the same inode)"
        if found is None:
            return self._new_file(name, "it %s, and holds none of the lines tail read" % what)
        end, crc, seq = found
        shown = self.shown.get(name)
        if shown is None or seq is not None and shown <= seq:
            gone = ""
        elif seq is None:
            gone = " (the records printed before, up to seq %d, are no longer in it)" % shown
        else:
            gone = " (seq %d..%d, printed before, are no longer in it)" % (seq + 1, shown)
        self.err.write("mini tail: %s %s: it holds what tail read up to %s; printing its records after it%s\n" % (
            name, what, "its header" if seq is None else "seq %d" % seq, gone))
        for table in (self.readers, self.marks):
            table.pop(name, None)
        for names in (self.resync, self.checked, self.torn_heads):
            names.discard(name)
        self.heads[name] = head
        self.offsets[name] = end
        self.sums[name] = (begin, crc)
        points = self.points.setdefault(name, deque(maxlen=POINTS))
        while points and points[-1][0] > end:
            points.pop()
        if seq is None:
            self.shown.pop(name, None)
        else:
            self.shown[name] = seq
        return True

    def _forget(self, name):
        for table in (self.offsets, self.readers, self.heads, self.marks, self.shown, self.idents, self.sums,
                      self.points, self.firsts):
            table.pop(name, None)
        for names in (self.resync, self.checked, self.torn_heads):
            names.discard(name)

    def _forget_all(self):
        for name in set(self.heads) | set(self.offsets):
            self._forget(name)

    # ------------------------------------------------------------ reading

    def _take(self, name, start, mark, data):
        """Read a file's new bytes; print what they complete; return the new offset."""
        offset, records = self._lines(name, start, data)
        self._account(name, start, data, offset, self._ends)
        self.marks[name] = (mark + data[:offset - start])[-MARK:]
        self.offsets[name] = offset
        self._show(name, records)
        return offset

    def _account(self, name, start, data, offset, ends):
        """The CRC-32 of what tail read of a file, from where it began, and the places where
        it could read on after the file shrank (_resume)."""
        begin, crc = self.sums.get(name, (start, 0))
        points = self.points.setdefault(name, deque(maxlen=POINTS))
        at = start
        for end, seq, _ in ends:
            crc = binascii.crc32(data[at - start:end - start], crc)
            at = end
            points.append((end, crc, seq))
            self.firsts.setdefault(name, points[-1])
        self.sums[name] = (begin, binascii.crc32(data[at - start:offset - start], crc))

    def _place(self, ask, placed):
        """The first poll: start with the last N records of the journal (-n N), newest
        file first, reading back from each file's end until the window holds them."""
        need = self.lines
        chosen = []
        for name, size in reversed(placed):
            chosen.append(self._window(ask, name, size, need))
            need -= len(chosen[-1][3])
        for name, start, mark, records, said, offset, data, ends in reversed(chosen):
            self.err.write(said)
            self._account(name, start, data, offset, ends)
            reader = self.readers.get(name)
            if reader is not None:
                reader.reporter.err = self.err  # its damage from now on goes to stderr
            self.marks[name] = (mark + data[:offset - start])[-MARK:]
            self.offsets[name] = offset
            self._show(name, records)

    def _window(self, ask, name, size, need):
        """Read back from the end of one file until it holds `need` whole records, or
        from its start: (name, start, mark, the records to show, damage said, offset, data)."""
        # -n 0: from the last byte, so that a last line still being written is skipped
        # whole and a complete one is not
        start, data, step = size, b"", PIECE if need > 0 else 1
        while True:
            begin = max(0, start - step)
            mark, piece = self._fetch(ask, name, begin, start)
            start, data = begin, piece + data
            said = io.StringIO()
            self.readers.pop(name, None)
            if start > 0:
                self.resync.add(name)  # the window begins inside a line
            else:
                self.resync.discard(name)
            err, self.err = self.err, said
            try:
                offset, records = self._lines(name, start, data)
            finally:
                self.err = err
            if len(records) >= need or start == 0:
                keep = records[len(records) - need:] if 0 < need < len(records) else records if need > 0 else []
                said.write(self._cut_batch(name, records, len(records) - len(keep) if keep else 0))
                return name, start, mark, keep, said.getvalue(), offset, data, self._ends
            # the bytes each record took so far, and room for pads (LittleFS block ends: up to a block)
            wanted = len(data) * need // len(records) + 4096 if records else 2 * len(data)
            step = max(PIECE, wanted - len(data))

    def _cut_batch(self, name, records, cut):
        """What to say when the -n window starts inside an atomic batch: it shows exactly N
        records, and says which batch its first ones end, and how many of it are not shown."""
        at = 0
        for _, _, count in self._ends:
            if at < cut < at + count:
                return ("mini tail: %s: the first %d records shown (seq %d..%d) are the end of an atomic batch "
                        "of %d (seq %d..%d): its first %d are not shown (-n %d)\n" % (
                            name, at + count - cut, records[cut][0], records[at + count - 1][0], count,
                            records[at][0], records[at + count - 1][0], cut - at, self.lines))
            at += count
        return ""

    def _show(self, name, records):
        last = self.shown.get(name)
        for seq, record in records:
            if last is not None and seq <= last:
                continue  # printed before the file shrank
            self.out.write(dump(record if self.raw else {"seq": seq, "rec": record}) + "\n")
            last = seq
        if last is not None:
            self.shown[name] = last
        self.out.flush()

    def _lines(self, name, start, data):
        records = []
        self._ends = []
        at = 0
        if start == 0 and name in self.torn_heads and name not in self.readers and name not in self.resync:
            self.err.write("mini tail: %s: damaged region at byte 0: damaged header with more lines after it\n"
                           % name)
            self.resync.add(name)  # read on from its second line
        if name in self.resync:
            cut = data.find(b"\n")
            if cut < 0:
                return start + len(data), records
            at = cut + 1
            self.resync.discard(name)
        reader = self.readers.get(name)
        if reader is None:
            reader = self.readers[name] = JournalReader.pushed(
                name, _Warn(name, start + at, self.err), mid_file=start + at > 0)
        while True:
            end = data.find(b"\n", at)
            if end < 0:
                break  # an incomplete line: read it again next time
            try:
                got = reader.push(data[at:end + 1])
                if got:
                    self._ends.append((start + end + 1, got[-1][0], len(got)))
                elif start + at == 0 and reader.base_seq is not None:  # the header: a place to read on from
                    self._ends.append((start + end + 1, None, 0))
                records += got
            except FormatError as exc:
                raise NotJournal(str(exc))
            except MiniError as exc:  # say it once, read no further
                self.err.write("mini tail: %s\n" % exc)
                return start + len(data), records
            at = end + 1
        return start + at, records
