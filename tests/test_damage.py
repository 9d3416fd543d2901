# Damage torture test (CPython only, issue 7): files written by the real bricks are
# damaged the two ways a disk, a card or a bad copy damages them, and every damaged
# copy is opened every documented way.
#
# - Truncation at EVERY byte offset 0..len of a ministore journal (single appends,
#   two append_many batches and a pad left by an earlier recovery), of the snapshots
#   and journal segments of a ministate directory, and of the journal of two queue
#   directories (a history from seq 0 with drops and dead letters, and one that starts
#   with a checkpoint).
# - Every bit (every byte x 8 bits) flipped in a small journal and in a snapshot.
#
# Each outcome must be one that FORMAT.md documents, and each is checked against a
# model built from the undamaged file (parsed here with json, not with the bricks):
#
# - an error of the documented class whose message names the file (CorruptRecord also
#   the line and byte offset where the damage starts): FormatError only for damage to
#   the header; SnapshotError for a damaged snapshot; CompactionGap when a queue's
#   checkpoint or an older segment is cut;
# - or a documented recovery: the records returned are exactly the original records,
#   seq for seq, of every unit (single record or whole batch) before the damage; a
#   torn tail starts where the damaged unit starts; a state equals the model state at
#   the seq it reports; a damaged snapshot falls back to the older one; a queue holds
#   exactly what the model holds after that prefix of its events.
#
# A writer's open() must then agree with the readers, refuse without changing a byte
# what they refuse, and leave a file that reopens the same and takes an append. And
# `mini verify` (minitools.cli.main, in-process) must exit 1 whenever a reader saw the
# damage, and 0 only when what reads back equals the original (a cut at a line
# boundary leaves a valid shorter file; an upper-case CRC digit reads the same).
#
# Any other outcome -- an undocumented exception, a wrong or missing record, a wrong
# state -- is a violation: the test prints the file kind, the offset or bit, and the
# exception, and fails. Figures go to tests/reliability.py (suite "damage").
import contextlib
import io
import json
import os
import subprocess
import sys
import time
import traceback

import pytest

import reliability
from ministore import MiniStore, JournalReader, CorruptRecord, FormatError, encode_json, header_line, record_line
from minisnap import SnapshotError, read_snapshot
from minilog import CompactionGap
from ministate import StateManager, Mutator
from miniqueue import MiniQueue, UnknownMessage
from minitools import cli
from oracles import QueueOracle, StateOracle

pytestmark = pytest.mark.skipif(sys.implementation.name != "cpython", reason="CPython only")

# Sizes. At "ci" the whole file runs in about a minute on two cores; "long" repeats
# the workloads so that every file is several times longer.
JOURNAL_REPEAT = reliability.pick(ci=1, long=5)    # ~1.3 KB of journal per repeat
STATE_OPS_PER_PHASE = reliability.pick(ci=6, long=30)
QUEUE_ROUNDS = reliability.pick(ci=1, long=4)
NOTES_KEPT = reliability.pick(ci=3, long=24)        # the state's size, so the snapshot's
SHOWN = 15  # violations printed in the failure message (all are counted)


# ------------------------------------------------------------------ bookkeeping

class Violation(Exception):
    """An outcome outside the documented set, or a wrong result."""


class Tally(reliability.Tally):
    """Counts for one brick and one kind of damage; one reliability.record() at the end."""

    failure = Violation
    expect = reliability.Tally.check

    def __init__(self, brick, config):
        reliability.Tally.__init__(self)
        self.brick = brick
        self.config = config
        self.cut_points = 0
        self.acked_ops = 0     # records (or events, mutations) wholly before the damage
        self.acked_lost = 0    # of those, missing from a recovery that did not refuse
        self.violations = []
        self.started = time.monotonic()

    def acked(self, expected, got):
        """`expected` units of data were wholly before the damage; `got` came back."""
        self.acked_ops += expected
        if got < expected:
            self.acked_lost += expected - got

    def case(self, where, check, *args):
        """Run one damaged input; any exception but the documented ones is a violation."""
        self.inputs += 1
        try:
            outcome = check(*args)
        except Violation as exc:
            self.violations.append("%s: %s" % (where, exc))
        except Exception as exc:
            tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-4:])
            self.violations.append("%s: unexpected %s: %s\n%s" % (where, type(exc).__name__, exc, tail))
        else:
            self.saw(outcome)

    def finish(self, extra_notes=""):
        seconds = time.monotonic() - self.started
        notes = self.summary()
        if extra_notes:
            notes = extra_notes + "; " + notes
        reliability.record(suite="damage", brick=self.brick, fs="posix", config=self.config,
                           cut_points=self.cut_points, seeds=0, checks=self.checks, inputs=self.inputs,
                           acked_ops=self.acked_ops, acked_lost=self.acked_lost,
                           violations=len(self.violations), wear=None, seconds=round(seconds, 2),
                           notes=notes)
        print("\ndamage %s, %s: inputs=%d checks=%d acked=%d lost=%d violations=%d (%.1fs)\n  %s" % (
            self.brick, self.config, self.inputs, self.checks, self.acked_ops, self.acked_lost,
            len(self.violations), seconds, notes))
        assert not self.violations and self.acked_lost == 0, "%d violations, %d acknowledged lost:\n%s" % (
            len(self.violations), self.acked_lost, "\n".join(self.violations[:SHOWN]))


@pytest.fixture(autouse=True)
def parser_built_once(monkeypatch):
    """cli.main() builds the same argparse parser at every call, which takes most of a
    check's time here; build it once. Everything else in main() runs as usual."""
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)


def mini_verify(*paths, as_json=False):
    """`mini verify [--json] PATH...` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["verify"] + (["--json"] if as_json else []) + [str(p) for p in paths])
    return code, out.getvalue(), err.getvalue()


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def write_dir(directory, files):
    """Make `directory` hold exactly `files` ({name: bytes}), and the writer's empty
    .lock file if it is there. Only files that differ are written: removing and
    creating every file for each of thousands of inputs costs more than the checks."""
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name not in files and name != ".lock":
            os.remove(os.path.join(directory, name))
    for name in files:
        path = os.path.join(directory, name)
        try:
            same = read_file(path) == files[name]
        except FileNotFoundError:
            same = False
        if not same:
            write_file(path, files[name])


def read_dir(directory):
    return dict((name, read_file(os.path.join(directory, name)))
                for name in sorted(os.listdir(directory)) if not name.startswith("."))


def crc_reads_the_same(original, damaged, line_end, offset):
    """The flip is in the CRC digits of the line that ends at `line_end`, and they still
    read as the same number: int(digits, 16), as FORMAT.md 1 reads them, takes an
    upper-case digit, and a space for a leading zero. The bytes the CRC covers are
    untouched, so the line reads the same."""
    start, stop = line_end - 11, line_end - 3
    if not start <= offset < stop:
        return None
    try:
        same = int(damaged[start:stop], 16) == int(original[start:stop], 16)
    except ValueError:
        return None
    if not same:
        return None
    return "upper-case CRC digit" if damaged[offset:offset + 1] in b"ABCDEF" else "space for a leading 0 of the CRC"


def flips(data):
    """(byte offset, bit, damaged bytes) for every bit of `data`."""
    for offset in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[offset] ^= 1 << bit
            yield offset, bit, bytes(damaged)


# ------------------------------------------------------------------ the model of a journal

class Line:
    def __init__(self, number, start, end, kind, seq=None):
        self.number = number    # 1-based
        self.start = start
        self.end = end          # offset after its newline
        self.kind = kind        # "header", "record" or "pad"
        self.seq = seq
        self.unit_start = start  # where the unit it belongs to (a whole batch) starts


class Shape:
    """The lines, records and batches of an undamaged journal, parsed with json alone."""

    def __init__(self, data):
        self.lines = []
        self.records = []       # [(seq, record)]
        self.unit_end = {}      # seq -> offset after the last line of its unit
        # Offsets after a whole unit, header or pad: a cut there leaves a valid shorter
        # journal. 0 too, where a torn header starts (an empty file is no journal).
        self.boundaries = [0]
        self.base_seq = None
        offset = 0
        batch = []              # lines of a batch still open
        left = 0
        for raw in data.split(b"\n")[:-1]:
            raw += b"\n"
            end = offset + len(raw)
            obj = json.loads(raw)
            if "format" in obj:
                line = Line(len(self.lines) + 1, offset, end, "header")
                self.base_seq = obj["base_seq"]
            elif "pad" in obj:
                line = Line(len(self.lines) + 1, offset, end, "pad")
            else:
                line = Line(len(self.lines) + 1, offset, end, "record", obj["seq"])
                self.records.append((obj["seq"], obj["rec"]))
                if not left and obj.get("batch", 1) > 1:
                    left = obj["batch"]
                    batch = []
                if left:
                    line.unit_start = batch[0].start if batch else offset
                    batch.append(line)
                    left -= 1
                    if not left:
                        for member in batch:
                            self.unit_end[member.seq] = end
                else:
                    self.unit_end[line.seq] = end
            self.lines.append(line)
            if not left:
                self.boundaries.append(end)
            offset = end
        assert offset == len(data) and not left, "the journal must end with a complete line"
        self.header_end = self.lines[0].end
        self.starts = [line.start for line in self.lines]

    def prefix(self, offset):
        """[(seq, record)] of every unit that ends at or before `offset`."""
        return [item for item in self.records if self.unit_end[item[0]] <= offset]

    def last_seq(self, offset):
        """The seq a reader reaches in a copy cut at `offset` (base_seq if no record)."""
        records = self.prefix(offset)
        return records[-1][0] if records else self.base_seq

    def boundary(self, offset):
        """The last offset <= `offset` where the content of the journal is complete."""
        return max(b for b in self.boundaries if b <= offset)

    def line_at(self, offset):
        index = 0
        for i, start in enumerate(self.starts):
            if start <= offset:
                index = i
        return self.lines[index]


class JournalRead:
    """What the readers (replay, stream, stream from a seq) made of one journal."""

    def __init__(self):
        self.records = None     # [(seq, record)], None if an error was raised
        self.torn = None
        self.seq = None
        self.error = None       # CorruptRecord or FormatError


def read_journal(tally, path, shape):
    """Read with replay(), stream() and stream(from_seq); they must agree with each other
    and every record any of them yields must be the original record of its seq."""
    originals = dict(shape.records)
    result = JournalRead()
    try:
        replayed = MiniStore.replay(path)
    except (CorruptRecord, FormatError) as exc:
        result.error = exc
        replayed = None
    yielded = []
    reader = MiniStore.stream(path)
    try:
        for item in reader:
            yielded.append(item)
    except (CorruptRecord, FormatError) as exc:
        tally.expect(result.error is not None and type(exc) is type(result.error) and str(exc) == str(result.error),
                     "stream() raised %r, replay() %r", exc, result.error)
    else:
        tally.expect(result.error is None, "replay() raised %r, stream() did not", result.error)
    # The reader's fast path must read every damaged file exactly as its long way does.
    slow = JournalReader(path, fast=False)
    slow_items = []
    try:
        for item in slow:
            slow_items.append(item)
        slow_error = None
    except (CorruptRecord, FormatError) as exc:
        slow_error = exc
    tally.expect(slow_items == yielded and repr(slow_error) == repr(result.error) and
                 repr(slow.torn) == repr(reader.torn) and slow.seq == reader.seq,
                 "fast and slow readers differ: %r %r %r vs %r %r %r", yielded[-1:], result.error, reader.torn,
                 slow_items[-1:], slow_error, slow.torn)
    for seq, record in yielded:
        tally.expect(originals.get(seq, KeyError) == record,
                     "stream() yielded seq %d = %r, the original is %r", seq, record, originals.get(seq))
    tally.expect([seq for seq, _ in yielded] == [seq for seq, _ in shape.records[:len(yielded)]],
                 "stream() yielded seqs %r, not a prefix of the originals", [s for s, _ in yielded])
    if result.error is None:
        tally.expect(replayed == [record for _, record in yielded],
                     "replay() and stream() returned different records")
        tally.expect(replayed.torn is not None if reader.torn is not None else replayed.torn is None,
                     "replay() and stream() disagree about the torn tail")
        tally.expect(replayed.seq == reader.seq, "replay().seq %r, stream's %r", replayed.seq, reader.seq)
        result.records = yielded
        result.torn = reader.torn
        result.seq = reader.seq
        tally.expect(reader.seq == (yielded[-1][0] if yielded else reader.base_seq),
                     "reader.seq %r is not the last seq read", reader.seq)
        # From a seq in the middle: the same records, cut at that seq.
        middle = shape.records[len(shape.records) // 2][0]
        partial = list(MiniStore.stream(path, from_seq=middle))
        tally.expect(partial == [item for item in yielded if item[0] >= middle],
                     "stream(from_seq=%d) returned %r", middle, partial)
    return result


def check_error_message(tally, exc, path, line=None, offset=None):
    text = str(exc)
    tally.expect(path in text, "%s does not name the file: %r", type(exc).__name__, text)
    if line is not None:
        tally.expect(exc.path == path and exc.line == line and exc.offset == offset,
                     "CorruptRecord names line %r offset %r, the damage starts at line %d offset %d",
                     exc.line, exc.offset, line, offset)
        tally.expect("line %d (byte offset %d)" % (line, offset) in text, "message without line and offset: %r", text)


def recover_journal(tally, path, shape, read, where):
    """open() as a writer: it refuses what the readers refuse (without changing a byte),
    or recovers the same records; then the journal reads clean, reopens the same and
    takes an append."""
    before = read_file(path)
    replayed = []
    if read.error is not None:
        try:
            store = MiniStore.open(path, replay=lambda seq, rec: replayed.append((seq, rec)))
        except (CorruptRecord, FormatError) as exc:
            tally.expect(type(exc) is type(read.error) and str(exc) == str(read.error),
                         "open() raised %r, the readers %r", exc, read.error)
        else:
            store.close()
            raise Violation("open() accepted a journal the readers refuse with %r" % read.error)
        tally.expect(read_file(path) == before, "open() changed a journal it refused")
        return
    store = MiniStore.open(path, replay=lambda seq, rec: replayed.append((seq, rec)))
    try:
        last = read.seq if read.seq is not None else shape.base_seq  # a torn header: written again
        tally.expect(store.seq == last, "open() is at seq %d, the readers at %r", store.seq, read.seq)
        tally.expect(replayed == read.records, "open() replayed other records than the readers")
    finally:
        store.close()
    reader = MiniStore.stream(path)
    again = list(reader)
    tally.expect(reader.torn is None and again == read.records,
                 "after open() the journal reads %d records, torn=%r", len(again), reader.torn)
    rewritten_header = read.seq is None and read.torn is not None and \
        read.torn.length <= len(header_line(shape.base_seq))  # the new header covers it all
    tally.expect(read.torn is None or read.torn.length == 0 or reader.pads >= 1 or rewritten_header,
                 "a torn tail was cut without a pad")
    store = MiniStore.open(path)
    try:
        tally.expect(store.seq == last, "the second open() is at seq %d, the first at %d", store.seq, last)
        seq = store.append({"after": where})
        tally.expect(seq == last + 1, "append after recovery got seq %d, not %d", seq, last + 1)
    finally:
        store.close()
    final = list(MiniStore.stream(path))
    tally.expect(final == read.records + [(last + 1, {"after": where})],
                 "the appended record does not read back after the recovered ones")


def verify_journal(tally, path, read, invisible):
    """mini verify: 1 when a reader saw the damage; 0 only if the content is unchanged
    (`invisible`: the damaged file reads back as a valid original, or prefix of it)."""
    code, out, err = mini_verify(path, as_json=True)
    seen = read.error is not None or read.torn is not None
    tally.expect(code in (0, 1), "mini verify exited %d: %s", code, err)
    problems = json.loads(out)["paths"][0]["problems"] if code in (0, 1) else []
    if seen:
        tally.expect(code == 1, "mini verify exited %d on damage the readers saw (%r)", code, read.error or read.torn)
        tally.expect(problems and all(p["file"] == path for p in problems),
                     "mini verify does not name the file: %r", out)
        if isinstance(read.error, CorruptRecord):
            # It reports the whole region it would move out (a batch from its first line).
            at = read.error.offset
            tally.expect(any(p["offset"] <= at < p["offset"] + max(p["length"], 1) for p in problems),
                         "mini verify reports no region around line %d offset %d: %r", read.error.line, at, out)
        if read.torn is not None:
            tally.expect(any(p["kind"] == "torn" and p["offset"] == read.torn.offset for p in problems),
                         "mini verify does not report the torn tail at offset %d: %r", read.torn.offset, out)
    if code == 0:
        tally.expect(invisible, "mini verify says OK, but the content differs from the original")
    return code


# ------------------------------------------------------------------ building the files

def journal_record(i):
    """Varied JSON: objects, lists, unicode, floats, booleans, null."""
    kinds = [
        {"Set": {"value": i, "name": "sensor-%d" % i}},
        [i, i * 0.25, True, None, "caf\u00e9"],
        {"t": 20.5 + i, "ok": i % 2 == 0, "tags": ["a", "\u2603"], "n": -i},
        "plain string %d with \"quotes\" and \\ backslash" % i,
        {"nested": {"deeper": [{"x": i}, []], "empty": {}}},
    ]
    return kinds[i % len(kinds)]


# Units appended, in order: 1 = append(), K > 1 = append_many of K, "pad" = a torn
# write that the next open() covers with a pad line.
JOURNAL_PLAN = [1, 1, 1, 3, 1, "pad", 1, 1, 3, 1, 2]


def build_journal(path):
    """A ministore journal made by the real store; returns its bytes."""
    store = MiniStore.open(path)
    i = 0
    for _ in range(JOURNAL_REPEAT):
        for unit in JOURNAL_PLAN:
            if unit == "pad":
                # What a writer killed in the middle of a write leaves: the first part
                # of its next line. The next open() overwrites it with a pad line.
                seq = store.seq + 1
                store.close()
                torn = record_line(seq, encode_json(journal_record(i)))
                with open(path, "ab") as f:
                    f.write(torn[:len(torn) // 2])
                store = MiniStore.open(path)
                assert store.seq == seq - 1
            elif unit == 1:
                store.append(journal_record(i))
                i += 1
            else:
                store.append_many([journal_record(i + k) for k in range(unit)])
                i += unit
    store.close()
    data = read_file(path)
    shape = Shape(data)
    assert [item for item in MiniStore.stream(path)] == shape.records
    assert any(line.kind == "pad" for line in shape.lines)
    assert mini_verify(path)[0] == 0
    return data, shape


def journal_description(data, shape):
    return "%d-byte journal, %d records, %d batches, %d pads" % (
        len(data), len(shape.records), sum(1 for u in JOURNAL_PLAN if u not in (1, "pad")) * JOURNAL_REPEAT,
        sum(1 for line in shape.lines if line.kind == "pad"))


class Add(Mutator):
    def __init__(self, key, by):
        self.key = key
        self.by = by

    def apply(self, state):
        state["n"] += 1
        state["sums"][self.key] = state["sums"].get(self.key, 0) + self.by


class Note(Mutator):
    def __init__(self, text):
        self.text = text

    def apply(self, state):
        state["n"] += 1
        state["notes"] = (state["notes"] + [self.text])[-NOTES_KEPT:]


STATE_INITIAL = {"n": 0, "sums": {}, "notes": []}
STATE_MUTATORS = [Add, Note]


def state_op(i):
    if i % 3 == 2:
        return Note(text="note %d caf\u00e9" % i)
    return Add(key="k%d" % (i % 4), by=i * 3 - 7)


class StateModel:
    """The state after every seq, from the state oracle (tests/core/oracles.py) fed the
    same mutators in order; kept as canonical JSON text, so that 1, 1.0 and true differ."""

    def __init__(self, count):
        oracle = StateOracle(STATE_INITIAL, keep_states=True)
        for i in range(count):
            oracle.commit([state_op(i)])
        self.states = [json.dumps(state, sort_keys=True) for state in oracle.states]

    def matches(self, state, seq):
        return 0 <= seq < len(self.states) and json.dumps(state, sort_keys=True) == self.states[seq]

    def after(self, seq, op):
        state = json.loads(self.states[seq])
        op.apply(state)
        return json.dumps(state, sort_keys=True)


def build_state_dir(directory):
    """Three phases of mutations (singles and a batch each) with a snapshot after the
    first two: snap-1 and snap-2 (keep=2), and the two segments the journal needs
    to reach back to snap-1."""
    sm = StateManager.open(directory, STATE_INITIAL, STATE_MUTATORS, snapshot_every=None, keep=2)
    i = 0
    snaps = []
    for phase in range(3):
        for step in range(STATE_OPS_PER_PHASE):
            if step == 2:
                sm.apply_many([state_op(i), state_op(i + 1), state_op(i + 2)])
                i += 3
            else:
                sm.apply(state_op(i))
                i += 1
        if phase < 2:
            snaps.append(sm.create_snapshot())
    sm.close()
    files = read_dir(directory)
    segments = sorted(n for n in files if n.startswith("journal-"))
    snapshots = sorted(n for n in files if n.startswith("snap-"))
    assert len(segments) == 2 and len(snapshots) == 2, sorted(files)
    model = StateModel(i)
    state, seq, snap_seq = StateManager.load(directory, STATE_INITIAL, STATE_MUTATORS)
    assert seq == i and snap_seq == snaps[1] and model.matches(state, seq)
    assert mini_verify(directory)[0] == 0
    return files, snapshots, segments, snaps, model, i


def queue_message(i):
    return {"n": i, "t": "m%d caf\u00e9" % i}


QUEUE_OPTIONS = {
    # A history from seq 0: puts, a put_many, get/ack/nack, a dead letter and its purge,
    # and drops (on_full="drop_oldest") in the same batch as the puts that caused them.
    # Each round leaves one more message in flight, which drop_oldest cannot drop: the
    # bound grows by two messages (~22 bytes each) a round.
    "history": dict(max_bytes=120 + 44 * (QUEUE_ROUNDS - 1), on_full="drop_oldest", max_deliveries=2,
                    compact_bytes=10 ** 9),
    # A queue whose journal starts with a checkpoint (FORMAT.md 5.4) of ready, in-flight
    # and dead messages, then more events.
    "checkpoint": dict(max_bytes=64 * 1024, on_full="reject", max_deliveries=2, compact_bytes=10 ** 9),
}


def queue_workload(q, name, rounds):
    n = 0
    for _ in range(rounds):
        q.put(queue_message(n))
        q.put(queue_message(n + 1))
        q.put_many([queue_message(n + 2), queue_message(n + 3)])
        n += 4
        mid, _ = q.get()
        q.ack(mid)
        mid, _ = q.get()
        q.nack(mid)
        mid, _ = q.get()
        q.nack(mid)                   # delivered twice: the next get makes it a dead letter
        mid, _ = q.get()              # "dead" then "get" of the next one
        if name == "checkpoint":
            q.get()                   # two in flight in the checkpoint
            q.compact()
            q.ack(mid)
        else:
            q.put_many([queue_message(n), queue_message(n + 1), queue_message(n + 2)])  # drops
            n += 3
            q.purge_dead()
            q.ack(mid)
        q.put_many([queue_message(n), queue_message(n + 1)])
        n += 2
        mid, _ = q.get()
        q.nack(mid)
        q.get()                       # left in flight


class QueueModel:
    """The queue after every seq of one segment, replayed by the queue oracle
    (tests/core/oracles.py, FORMAT.md 5.1) from the undamaged lines: {seq: (messages,
    dropped)} or None where the queue is refused (a checkpoint not yet complete in a
    segment that does not start at seq 0). messages is a sorted tuple of (id, message
    as compact JSON, deliveries, status)."""

    def __init__(self, shape):
        oracle = QueueOracle(shape.base_seq)
        self.views = {shape.base_seq: self._view(oracle)}
        for seq, event in shape.records:
            oracle.apply(event)
            assert oracle.seq == seq, (oracle.seq, seq)
            self.views[seq] = self._view(oracle)
        self.ids = sorted(set(seq for seq, event in shape.records if "put" in event) |
                          set(e["ckpt"][0] for _, e in shape.records if "ckpt" in e))

    @staticmethod
    def _view(oracle):
        if not oracle.complete:
            return None
        msgs = oracle.msgs
        return tuple((mid, compact(msgs[mid][0]), msgs[mid][1], msgs[mid][2]) for mid in sorted(msgs)), oracle.dropped


EMPTY_QUEUE = ((), 0)


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def check_queue_view(tally, view, expected, ids, what):
    """A MiniQueue (inspect()ed, or opened) holds exactly the model's messages."""
    messages, dropped = expected
    ready = [m for m in messages if m[3] == 0]
    flying = [m for m in messages if m[3] == 1]
    dead = [(m[0], json.loads(m[1]), m[2]) for m in messages if m[3] == 2]
    tally.expect(len(view) == len(ready) and view.in_flight() == len(flying),
                 "%s: %d ready, %d in flight; the model %d, %d", what, len(view), view.in_flight(),
                 len(ready), len(flying))
    tally.expect(view.dead() == dead, "%s: dead letters %r, the model %r", what, view.dead(), dead)
    tally.expect(view.dropped == dropped, "%s: dropped %d, the model %d", what, view.dropped, dropped)
    live = sum(len(m[1].encode()) for m in messages)
    tally.expect(view.live_bytes() == live, "%s: %d live bytes, the model %d", what, view.live_bytes(), live)
    deliveries = dict((m[0], m[2]) for m in messages)
    for mid in ids:
        try:
            count = view.deliveries(mid)
        except UnknownMessage:
            count = None
        tally.expect(count == deliveries.get(mid), "%s: message %d delivered %r times, the model %r",
                     what, mid, count, deliveries.get(mid))


def build_queue_dir(directory, name):
    q = MiniQueue.open(directory, **QUEUE_OPTIONS[name])
    queue_workload(q, name, QUEUE_ROUNDS)
    q.close()
    files = read_dir(directory)
    segments = [n for n in files if n.startswith("journal-")]
    assert len(segments) == 1, sorted(files)
    shape = Shape(files[segments[0]])
    model = QueueModel(shape)
    kinds = set(k for _, e in shape.records for k in e)
    if name == "history":
        assert shape.base_seq == 0 and {"put", "get", "ack", "nack", "dead", "purge", "drop"} <= kinds, kinds
    else:
        assert shape.base_seq > 0 and {"ckpt", "ckpt_end", "put", "get", "ack", "nack"} <= kinds, kinds
    # The model agrees with the real queue on the undamaged directory.
    view = MiniQueue.inspect(directory)
    check_queue_view(Tally("setup", name), view, model.views[shape.records[-1][0]], model.ids, "setup")
    assert mini_verify(directory)[0] == 0
    return files, segments[0], shape, model


# ------------------------------------------------------------------ ministore

def test_ministore_journal_truncated_at_every_byte(tmp_path):
    data, shape = build_journal(str(tmp_path / "journal.jsonl"))
    tally = Tally("ministore", "truncate every byte")
    path = str(tmp_path / "cut.jsonl")

    def cut(k):
        write_file(path, data[:k])
        read = read_journal(tally, path, shape)
        tally.expect(read.error is None, "a cut raised %r (a cut journal has a torn tail at most)", read.error)
        expected = shape.prefix(k)
        tally.acked(len(expected), len(read.records))
        tally.expect(read.records == expected, "%d records read, %d units end before the cut",
                     len(read.records), len(expected))
        clean = k > 0 and shape.boundary(k) == k
        if clean:
            tally.expect(read.torn is None, "a cut at a line boundary reads as torn: %r", read.torn)
        else:
            start = shape.boundary(k)
            tally.expect(read.torn is not None and read.torn.offset == start and read.torn.length == k - start,
                         "torn tail %r, expected at offset %d, %d bytes", read.torn, start, k - start)
        tally.expect(read.seq == (shape.last_seq(k) if k >= shape.header_end else None),
                     "reader.seq %r after a cut at %d", read.seq, k)
        code = verify_journal(tally, path, read, invisible=clean)
        tally.expect(code == (0 if clean else 1), "mini verify exited %d", code)
        recover_journal(tally, path, shape, read, k)
        if clean:
            return "valid shorter journal (cut at a line boundary)"
        if k < shape.header_end:
            return "torn header"
        if shape.boundary(k) != shape.line_at(k).start:
            return "torn tail: incomplete batch"
        return "torn tail"

    for k in range(len(data) + 1):
        tally.cut_points += 1
        tally.case("ministore journal cut at byte %d of %d" % (k, len(data)), cut, k)
    tally.finish(journal_description(data, shape))


def test_ministore_journal_every_bit_flipped(tmp_path):
    data, shape = build_journal(str(tmp_path / "journal.jsonl"))
    tally = Tally("ministore", "flip every bit")
    path = str(tmp_path / "flipped.jsonl")
    last_line = shape.lines[-1]

    def flip(offset, bit, damaged):
        write_file(path, damaged)
        line = shape.line_at(offset)
        before = shape.prefix(line.unit_start)  # every unit wholly before the damaged one
        read = read_journal(tally, path, shape)
        if isinstance(read.error, CorruptRecord):
            # The damaged line is the first one that differs, and intact lines follow it.
            check_error_message(tally, read.error, path, line.number, line.start)
            outcome = "CorruptRecord"
        elif isinstance(read.error, FormatError):
            tally.expect(line.kind == "header", "FormatError for damage to line %d, not the header", line.number)
            check_error_message(tally, read.error, path)
            outcome = "FormatError (header)"
        elif read.torn is None:
            tally.expect(read.records == shape.records,
                         "the flip went unseen, and the journal reads %d records, not the %d written",
                         len(read.records), len(shape.records))
            # Any changed byte fails the line's CRC (FORMAT.md 1), unless the CRC digits
            # still read as the same number.
            how = crc_reads_the_same(data, damaged, line.end, offset)
            tally.expect(how, "a changed byte in line %d (%s) went unseen: %r became %r", line.number, line.kind,
                         data[offset:offset + 1], damaged[offset:offset + 1])
            tally.acked(len(before), len(read.records))
            outcome = "reads the same (%s)" % how
        else:
            # FORMAT.md 2.4: damage with no intact line after it is a torn tail.
            tally.acked(len(before), len(read.records))
            tally.expect(read.torn.offset <= offset < read.torn.offset + read.torn.length and
                         read.torn.offset + read.torn.length == len(damaged),
                         "torn tail %r does not hold the flipped byte %d", read.torn, offset)
            tally.expect(read.records == before, "%d records read, %d units before the damage",
                         len(read.records), len(before))
            joins_last = offset == line.end - 1 and line.end == last_line.start
            tally.expect(line is last_line or joins_last,
                         "damage to line %d, with intact lines after it, read as a torn tail", line.number)
            outcome = ("torn tail (damage in the last line)" if line is last_line else
                       "torn tail (the newline before the last line flipped: two lines joined)")
        verify_journal(tally, path, read, invisible=read.error is None and read.torn is None)
        recover_journal(tally, path, shape, read, offset * 8 + bit)
        return outcome

    for offset, bit, damaged in flips(data):
        tally.cut_points += 1
        line = shape.line_at(offset)
        tally.case("ministore journal, bit %d of byte %d (line %d, %s)" % (bit, offset, line.number, line.kind),
                   flip, offset, bit, damaged)
    tally.finish(journal_description(data, shape))


# ------------------------------------------------------------------ minisnap and ministate

def check_state_dir(tally, directory, files, model, expected, where):
    """load(), mini verify, then open() twice and an apply(), on a damaged directory.

    expected: ("state", seq, snapshot_seq, fell_back) or ("gap",), or a list of those.
    Returns the outcome that happened."""
    options = expected if isinstance(expected, list) else [expected]
    write_dir(directory, files)
    try:
        state, seq, snap_seq = StateManager.load(directory, STATE_INITIAL, STATE_MUTATORS)
    except CompactionGap as exc:
        tally.expect(("gap",) in options, "load() raised %r, expected %r", exc, options)
        tally.expect(directory in str(exc), "CompactionGap does not name the directory: %r", str(exc))
        got = ("gap",)
    else:
        tally.expect(model.matches(state, seq), "load() state at seq %d is not the model's state at seq %d",
                     seq, seq)
        matching = [o for o in options if o[0] == "state" and o[1] == seq and o[2] == snap_seq]
        tally.expect(matching, "load() recovered seq %d from the snapshot at %d, expected %r", seq, snap_seq, options)
        got = matching[0]
    if got[0] == "state":
        # Every mutation wholly before the damage (a refusal is an error, not a loss).
        tally.acked(max(o[1] for o in options if o[0] == "state"), got[1])

    code, out, err = mini_verify(directory)
    damaged_seen = got[0] == "gap" or got[3]  # a refusal or a fallback
    tally.expect(code in (0, 1), "mini verify exited %d: %s", code, err)
    if damaged_seen:
        tally.expect(code == 1, "mini verify exited %d on a directory that recovery saw damaged", code)

    # The writer: the same outcome, stable across reopens, and it takes a mutation.
    try:
        sm = StateManager.open(directory, STATE_INITIAL, STATE_MUTATORS, snapshot_every=None, keep=2)
    except CompactionGap as exc:
        tally.expect(got == ("gap",), "open() raised %r, load() did not", exc)
        try:
            StateManager.open(directory, STATE_INITIAL, STATE_MUTATORS, snapshot_every=None, keep=2).close()
        except CompactionGap:
            pass
        else:
            raise Violation("a second open() accepted what the first refused")
        return got, code
    try:
        tally.expect(got != ("gap",), "open() accepted a directory load() refused")
        tally.expect(sm.seq == got[1] and sm.snapshot_seq == got[2] and sm.fell_back == got[3],
                     "open() at seq %d (snapshot %d, fell_back %s), load() at %r",
                     sm.seq, sm.snapshot_seq, sm.fell_back, got)
        tally.expect(model.matches(sm.state, sm.seq), "open() state differs from the model at seq %d", sm.seq)
        if got[3]:
            tally.expect(sm.skipped_snapshots and all(directory in p for p, _ in sm.skipped_snapshots),
                         "fell back without naming the skipped snapshot: %r", sm.skipped_snapshots)
        extra = Note(text="after %s" % where)
        new_seq = sm.apply(extra)
        tally.expect(new_seq == got[1] + 1, "apply() after recovery got seq %d", new_seq)
    finally:
        sm.close()
    sm = StateManager.open(directory, STATE_INITIAL, STATE_MUTATORS, snapshot_every=None, keep=2)
    try:
        tally.expect(sm.seq == got[1] + 1 and json.dumps(sm.state, sort_keys=True) == model.after(got[1], extra),
                     "reopened at seq %d: the mutation applied after recovery is not there", sm.seq)
    finally:
        sm.close()
    return got, code


def test_minisnap_snapshots_truncated_at_every_byte(tmp_path):
    files, snapshots, segments, snaps, model, final = build_state_dir(str(tmp_path / "state"))
    tally = Tally("minisnap", "truncate every byte")
    directory = str(tmp_path / "damaged")

    def cut(name, k):
        damaged = dict(files)
        damaged[name] = files[name][:k]
        newest = name == snapshots[-1]
        # read_snapshot: an error naming the file for any cut, the original when whole.
        write_dir(directory, damaged)
        path = os.path.join(directory, name)
        try:
            state, seq = read_snapshot(path)
        except SnapshotError as exc:
            tally.expect(k < len(files[name]), "read_snapshot refused the whole file: %s", exc)
            check_error_message(tally, exc, path)
        else:
            tally.expect(k == len(files[name]), "read_snapshot accepted a snapshot cut at %d of %d",
                         k, len(files[name]))
            tally.expect(seq == snaps[snapshots.index(name)] and model.matches(state, seq),
                         "read_snapshot returned another state or seq %d", seq)
        whole = k == len(files[name])
        if newest and not whole:
            expected = ("state", final, snaps[0], True)   # falls back to the older snapshot
        else:
            expected = ("state", final, snaps[1], False)  # the newest snapshot is used
        got, code = check_state_dir(tally, directory, damaged, model, expected, "%s@%d" % (name, k))
        if code == 0:
            tally.expect(whole, "mini verify says OK for %s cut at %d", name, k)
        else:
            tally.expect(not whole, "mini verify exited %d on the undamaged directory", code)
        if whole:
            return "whole file"
        return "fell back to the older snapshot" if newest else "older snapshot cut, newest used"

    for name in snapshots:
        for k in range(len(files[name]) + 1):
            tally.cut_points += 1
            tally.case("snapshot %s cut at byte %d of %d" % (name, k, len(files[name])), cut, name, k)
    tally.finish("2 snapshots (%s bytes) in a ministate directory, keep=2" % (
        "+".join(str(len(files[n])) for n in snapshots)))


def test_ministate_segments_truncated_at_every_byte(tmp_path):
    files, snapshots, segments, snaps, model, final = build_state_dir(str(tmp_path / "state"))
    tally = Tally("ministate", "truncate every byte")
    directory = str(tmp_path / "damaged")
    older, newest = segments
    shape = Shape(files[newest])

    def cut(name, k):
        damaged = dict(files)
        damaged[name] = files[name][:k]
        whole = k == len(files[name])
        if name == newest:
            # Every unit wholly before the cut is recovered; a torn header is written
            # again after the segment before it (FORMAT.md 4.1, step 5).
            seq = shape.last_seq(k) if k >= shape.header_end else snaps[1]
            expected = ("state", seq, snaps[1], False)
        elif k >= Shape(files[older]).header_end:
            # Wholly covered by the newest snapshot: it need not be read (FORMAT.md 4.1,
            # step 3); a reader that does read it finds a gap.
            expected = [("state", final, snaps[1], False), ("gap",)]
        else:
            # Its base_seq is gone: the chain cannot be checked.
            expected = [("gap",), ("state", final, snaps[1], False)]
        got, code = check_state_dir(tally, directory, damaged, model, expected, "%s@%d" % (name, k))
        clean = whole or (name == newest and k > 0 and shape.boundary(k) == k)
        if code == 0:
            tally.expect(clean and got[0] == "state",
                         "mini verify says OK for %s cut at %d, which is not a valid shorter journal", name, k)
        else:
            tally.expect(not whole, "mini verify exited %d on the undamaged directory", code)
        if whole:
            return "whole file"
        if got == ("gap",):
            return "CompactionGap (older segment's header cut)"
        if name == older:
            return "older segment cut, not needed (covered by the newest snapshot)"
        if clean:
            return "newest segment cut at a line boundary"
        return "newest segment: torn header written again" if k < shape.header_end else "newest segment: torn tail"

    for name in segments:
        for k in range(len(files[name]) + 1):
            tally.cut_points += 1
            tally.case("segment %s cut at byte %d of %d" % (name, k, len(files[name])), cut, name, k)
    tally.finish("2 journal segments (%s bytes) in a ministate directory" % (
        "+".join(str(len(files[n])) for n in segments)))


def test_minisnap_snapshot_every_bit_flipped(tmp_path):
    files, snapshots, segments, snaps, model, final = build_state_dir(str(tmp_path / "state"))
    tally = Tally("minisnap", "flip every bit")
    directory = str(tmp_path / "damaged")
    name = snapshots[-1]

    def flip(offset, bit, damaged_bytes):
        damaged = dict(files)
        damaged[name] = damaged_bytes
        write_dir(directory, damaged)
        path = os.path.join(directory, name)
        try:
            state, seq = read_snapshot(path)
        except SnapshotError as exc:
            check_error_message(tally, exc, path)
            expected = ("state", final, snaps[0], True)
            outcome = "SnapshotError, fell back to the older snapshot"
        else:
            tally.expect(seq == snaps[1] and model.matches(state, seq),
                         "read_snapshot returned seq %d and a state that is not the one written", seq)
            how = crc_reads_the_same(files[name], damaged_bytes, len(damaged_bytes), offset)
            tally.expect(how, "a changed byte went unseen: %r became %r", files[name][offset:offset + 1],
                         damaged_bytes[offset:offset + 1])
            expected = ("state", final, snaps[1], False)
            outcome = "reads the same (%s)" % how
        got, code = check_state_dir(tally, directory, damaged, model, expected, "bit %d" % (offset * 8 + bit))
        if code == 0:
            tally.expect(not got[3], "mini verify says OK for a snapshot the reader refuses")
        return outcome

    for offset, bit, damaged_bytes in flips(files[name]):
        tally.cut_points += 1
        tally.case("snapshot %s, bit %d of byte %d" % (name, bit, offset), flip, offset, bit, damaged_bytes)
    tally.finish("%d-byte snapshot (the newest of 2)" % len(files[name]))


# ------------------------------------------------------------------ miniqueue

def check_queue_cut(tally, directory, damaged, shape, model, k, where):
    write_dir(directory, damaged)
    if k < shape.header_end and shape.base_seq == 0:
        # A torn header is written again after the segment before it; there is none,
        # so the queue starts from seq 0, empty (FORMAT.md 4.1 step 5, 5.1).
        expected, last = EMPTY_QUEUE, 0
    elif k < shape.header_end:
        # The only segment left after a compaction: no crash tears its header, and
        # where it starts is unknown, so the queue is refused (FORMAT.md 4.1 step 5).
        expected, last = None, shape.base_seq
    else:
        last = shape.last_seq(k)
        expected = model.views[last]
    acked = max(0, last - shape.base_seq)
    try:
        view = MiniQueue.inspect(directory)
    except CompactionGap as exc:
        tally.expect(expected is None, "inspect() raised %r; the model has a queue at seq %d", exc, last)
        tally.expect(directory in str(exc), "CompactionGap does not name the queue: %r", str(exc))
        refused = True
    else:
        tally.expect(expected is not None, "inspect() accepted a queue whose checkpoint was cut (seq %d)", last)
        tally.expect(view.last_seq == last, "inspect() read up to seq %d, the cut leaves %d", view.last_seq, last)
        tally.acked(acked, max(0, view.last_seq - shape.base_seq))
        check_queue_view(tally, view, expected, model.ids, "inspect()")
        refused = False

    code, out, err = mini_verify(directory)
    clean = k > 0 and shape.boundary(k) == k
    tally.expect(code in (0, 1), "mini verify exited %d: %s", code, err)
    if refused or not clean:
        tally.expect(code == 1, "mini verify exited %d on a queue cut at %d (torn or refused)", code, k)
    if code == 0:
        tally.expect(clean and not refused, "mini verify says OK for a queue that is damaged")

    # The writer: the same outcome; in-flight messages are ready again; stable; usable.
    try:
        q = MiniQueue.open(directory)
    except CompactionGap:
        tally.expect(refused, "open() refused a queue inspect() accepted")
        try:
            MiniQueue.open(directory).close()
        except CompactionGap:
            pass
        else:
            raise Violation("a second open() accepted what the first refused")
        if k < shape.header_end:
            return "CompactionGap (the only segment's header cut)"
        return "CompactionGap (checkpoint cut)"
    messages = (expected or EMPTY_QUEUE)[0]
    try:
        tally.expect(not refused, "open() accepted a queue inspect() refused")
        tally.expect(len(q) == sum(1 for m in messages if m[3] in (0, 1)) and q.in_flight() == 0,
                     "open(): %d ready and %d in flight", len(q), q.in_flight())
    finally:
        q.close()
    # The drain's get()s need not be durable one by one (close() syncs them): this
    # session checks what recovery left and that the queue takes events, not fsync.
    q = MiniQueue.open(directory, sync=64)
    try:
        drained = []
        while True:
            item = q.get()
            if item is None:
                break
            drained.append((item[0], compact(item[1]), q.deliveries(item[0])))
        wanted = [(m[0], m[1], m[2] + 1) for m in messages if m[3] in (0, 1)]
        tally.expect(drained == wanted, "draining the reopened queue gave %r, the model %r", drained, wanted)
        new_id = q.put({"after": where})
        tally.expect(new_id == q.seq, "put after recovery got id %d at seq %d", new_id, q.seq)
    finally:
        q.close()
    again = MiniQueue.inspect(directory)
    tally.expect(len(again) == 1 and again.in_flight() == len(drained) and again.last_seq == new_id,
                 "after the drain and a put: %d ready, %d in flight, seq %d", len(again), again.in_flight(),
                 again.last_seq)
    if k < shape.header_end:
        return "torn header: empty queue from seq 0"
    return "queue at the cut" if clean else "torn tail cut, queue at the last whole unit"


def test_miniqueue_journal_truncated_at_every_byte(tmp_path):
    tally = Tally("miniqueue", "truncate every byte")
    sizes = []
    for name in ("history", "checkpoint"):
        files, segment, shape, model = build_queue_dir(str(tmp_path / name), name)
        directory = str(tmp_path / ("damaged-" + name))
        data = files[segment]
        sizes.append("%s %d bytes" % (name, len(data)))
        for k in range(len(data) + 1):
            damaged = dict(files)
            damaged[segment] = data[:k]
            tally.cut_points += 1
            tally.case("queue '%s' %s cut at byte %d of %d" % (name, segment, k, len(data)),
                       check_queue_cut, tally, directory, damaged, shape, model, k, "%s@%d" % (name, k))
    tally.finish("2 queue journals (%s)" % ", ".join(sizes))


# ------------------------------------------------------------------ the real `mini` command

def test_mini_verify_command_on_damaged_files(tmp_path):
    """The installed `mini` command, as a subprocess, agrees with the in-process runs
    on a handful of damaged files: 1 for damage, 0 for what reads back the same."""
    data, shape = build_journal(str(tmp_path / "journal.jsonl"))
    files, snapshots = build_state_dir(str(tmp_path / "state"))[:2]
    qfiles, qsegment, qshape = build_queue_dir(str(tmp_path / "queue"), "checkpoint")[:3]
    middle = shape.lines[len(shape.lines) // 2]
    flipped = bytearray(data)
    flipped[middle.start + 3] ^= 0x04
    header = bytearray(data)
    header[data.index(b"ministore") + 2] ^= 0x01  # "miostore": another format name
    cases = [
        ("journal cut inside a line", data[:middle.start + 5], 1),
        ("journal cut at a line boundary", data[:shape.boundary(middle.start)], 0),
        ("journal with a flipped bit in the middle", bytes(flipped), 1),
        ("journal with another format name", bytes(header), 1),
        ("undamaged journal", data, 0),
    ]
    script = os.path.join(os.path.dirname(sys.executable), "mini")
    command = [script] if os.path.exists(script) else [sys.executable, "-m", "minitools.cli"]
    env = dict(os.environ)
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(top, "shared"), os.path.join(top, "cpython")])

    def run(path):
        proc = subprocess.run(command + ["verify", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert "Traceback" not in proc.stderr.decode(), proc.stderr.decode()
        return proc.returncode, proc.stdout.decode()

    for i, (what, content, expected) in enumerate(cases):
        path = str(tmp_path / ("case-%d.jsonl" % i))
        write_file(path, content)
        code, out = run(path)
        assert code == expected == mini_verify(path)[0], (what, code, out)
        assert path in out, (what, out)
    damaged = dict(files)
    damaged[snapshots[-1]] = files[snapshots[-1]][:-7]
    write_dir(str(tmp_path / "state-cut"), damaged)
    qdamaged = dict(qfiles)
    qdamaged[qsegment] = qfiles[qsegment][:qshape.lines[2].end]  # inside the checkpoint
    write_dir(str(tmp_path / "queue-cut"), qdamaged)
    for what, path in (("state with its newest snapshot cut", tmp_path / "state-cut"),
                       ("queue cut inside its checkpoint", tmp_path / "queue-cut")):
        code, out = run(str(path))
        assert code == 1 == mini_verify(path)[0], (what, code, out)
