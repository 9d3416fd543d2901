"""`mini tail`'s follower: polls a journal (or a directory of segments) on the device
and turns the new bytes into records with the core's one journal reader
(ministore.JournalReader, fed line by line), so that tail shows exactly what a reader
would accept: a batch only once it is whole, seqs in order, damage reported.
"""
import json
import sys

from ministore import JournalReader, MiniError

from minitools import dump
from minitools.mpremote_link import PREFIX, device_eval, remote_path as _remote


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


_TAIL_CODE = """
import os, json, binascii
def _mini_tail(p, offsets, budget, first, tail):
    try:
        st = os.stat(p)
    except OSError:
        return None
    if st[0] & 0x4000:
        names = [p + '/' + n for n in sorted(os.listdir(p)) if n.startswith('journal-') and n.endswith('.jsonl')]
    else:
        names = [p]
    out = []
    for i in range(len(names)):
        size = os.stat(names[i])[6]
        start = offsets.get(names[i])
        if start is None:
            if not first or tail < 0:
                start = 0
            elif i == len(names) - 1:
                start = max(0, size - tail - 1)
            else:
                start = size
        data = b''
        if size > start and budget > 0:
            with open(names[i], 'rb') as f:
                f.seek(start)
                data = f.read(min(size - start, budget))
            budget -= len(data)
        out.append([names[i], size, start, binascii.hexlify(data).decode()])
    return out
print('%s', json.dumps(_mini_tail('%s', %s, %d, %d, %d)))
"""


class Follower:
    """Polls a journal (or a directory of segments) on the device and turns new bytes into records."""

    def __init__(self, port, journal, lines, raw, out=None, err=None):
        self.port = port
        self.journal = _remote(journal)
        self.tail_bytes = -1 if lines < 0 else (0 if lines == 0 else 2048 + 512 * lines)
        self.lines = lines
        self.raw = raw
        self.offsets = {}      # device file -> offset after its last complete line
        self.readers = {}      # device file -> the JournalReader its lines are pushed into
        self.resync = set()    # files read from the middle of a line: skip to the next newline
        self.budget = 16 * 1024
        self.first = True
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def poll(self, evaluate=None):
        """One exchange with the device; returns True if more bytes are waiting.

        evaluate(code) runs the code on the device and returns the value it prints
        (a DeviceSession's eval); by default, one `mpremote exec` of its own."""
        code = _TAIL_CODE % (PREFIX, self.journal, json.dumps(self.offsets), self.budget, self.first,
                             self.tail_bytes)
        answer = evaluate(code) if evaluate is not None else device_eval(self.port, code)
        if answer is None:
            raise FileNotFoundError(self.journal)
        records = []
        more = moved = False
        seen = set()
        for name, size, start, hexdata in answer:
            seen.add(name)
            known = self.offsets.get(name)
            if known is not None and size < known:
                self.err.write("mini tail: %s shrank to %d bytes: reading it again from the start\n" % (name, size))
                self.offsets[name] = 0
                self.readers.pop(name, None)
                more = True
                continue
            data = bytes.fromhex(hexdata)
            if known is None and start > 0:  # a window that starts (1 byte early) inside a line:
                self.resync.add(name)        # skip through the first newline
            offset, new = self._lines(name, start, data)
            records += new
            moved = moved or offset > start
            self.offsets[name] = offset
            if start + len(data) < size:
                more = True
        # a line longer than what one poll reads: read more at once next time
        self.budget = min(self.budget * 2, 1 << 20) if more and not moved else 16 * 1024
        for name in list(self.offsets):
            if name not in seen:
                del self.offsets[name]  # compacted away
                self.readers.pop(name, None)
                self.resync.discard(name)
        if self.first and self.lines > 0:
            records = records[-self.lines:]
        self.first = False
        for seq, record in records:
            self.out.write(dump(record if self.raw else {"seq": seq, "rec": record}) + "\n")
        self.out.flush()
        return more

    def _lines(self, name, start, data):
        records = []
        at = 0
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
                records += reader.push(data[at:end + 1])
            except MiniError as exc:  # not a journal (FormatError): say it once, read no further
                self.err.write("mini tail: %s\n" % exc)
                return start + len(data), records
            at = end + 1
        return start + at, records
