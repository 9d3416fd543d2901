"""minireport: the reader's reporter mode, JournalReader(path, reporter=...): the same
rules as minireader, but damage is reported and reading goes on. The host tools use it
(mini tail, scan, repair); minireader imports it only for a reader given a reporter,
so a board that never asks for one never loads it (issue 14: heap).
"""
from miniformat import TornTail, FOREIGN, HEADER, PAD, check_header, is_int, parse_line


def step(reader, line):
    """JournalReader._step for a reader with a reporter: read one line (b"" at the end).

    reader._absorb_to: intact lines up to this seq belong to a batch that lost a member;
    reader._absorbed: the last of them read (set here, not by JournalReader: a reader on
    a board, which never reports, keeps its instance dict smaller)."""
    offset = reader.size
    if not line:
        finish(reader)
        return
    reader.size += len(line)
    reader._line_no += 1
    number = reader._line_no
    if number == 1:
        base = check_header(reader.path, line, reader._peek)  # FormatError: not ours, nothing to report
        if base is None:
            reader._region = (0, 1, "torn header", False)
        else:
            reader.base_seq = reader.seq = base
            reader._expect = base + 1
        return
    region = reader._region
    if number == 2 and region is not None:  # a crash leaves a torn header only as the whole file
        region = reader._region = (0, 1, "damaged header with more lines after it", True)
    kind, obj = parse_line(line)
    if kind is None:
        if region is None:
            reader._region = (offset, number, str(obj), False)
            reader._absorb_to = _batch_end(reader, line)
        return
    if region is not None and not region[3]:  # sealed data after damage: corruption, not a torn tail
        if (reader.unsynced and kind != HEADER and isinstance(obj, dict) and
                obj.get("why") not in ("sync point", "sync always")):
            return  # unless all of it was written after the last sync (FORMAT.md 2.4): the torn tail's
        region = reader._region = (region[0], region[1], region[2], True)
    damage = _damage(reader, kind, obj)
    if damage is not None or not isinstance(obj, dict):
        if region is None:
            reader._region = (offset, number, damage or str(obj), True)
            reader._absorb_to = _batch_end(reader, line)
        return
    if region is not None and kind != PAD and obj.get("batch", 1) == 1 and obj["seq"] <= getattr(
            reader, "_absorb_to", 0):
        # the rest of a batch that lost a member: intact, but the batch goes whole
        # (FORMAT.md 2.2), so these lines join the damaged region and its lost range
        reader._absorbed = obj["seq"]
        return
    reporter = reader.reporter
    assert reporter is not None  # this runs only with one (see JournalReader.__init__)
    if kind == PAD:
        reader.pads += 1
        why = obj.get("why")  # how the lines after it were synced (FORMAT.md 2.3)
        if why == "sync point":
            reader.unsynced = True
        elif why == "sync always":
            reader.unsynced = False
        lost = obj.get("lost")
        if lost is not None and region is None:
            if reader._batch_left or lost[0] != reader._expect:
                reader._region = (offset, number, "pad with a bad lost range %r" % (lost,), True)
            else:
                reader._skip_lost(lost, offset)
        return
    seq = obj["seq"]
    if reader._expect < 0:  # intact records after a torn header: they say where it started
        reader._expect = seq
        reader.base_seq = seq - 1
    if region is not None or seq != reader._expect:
        start = region or (offset, number, "sequence gap: expected seq %d, found %d" % (reader._expect, seq), True)
        first_lost = reader._expect
        if reader._batch_left:  # the batch lost a member: it goes whole
            first_lost = reader._batch[0][0]
            start = (reader._batch_at[0], reader._batch_at[1],
                     start[2] + " (inside the batch at seq %d)" % first_lost, True)
            reader._batch = []
            reader._batch_left = 0
        reporter.report("corrupt", start[1], start[0], offset - start[0], start[2],
                        (first_lost, seq - 1) if seq > first_lost else None)
        reader._region = None
        reader._absorb_to = reader._absorbed = 0
        reader._expect = seq
    reader._record(obj, offset)

def finish(reader):
    """The end of the journal: report what damage is still open, and set `torn`."""
    reader._done = True
    reader.close()
    reporter = reader.reporter
    assert reporter is not None
    start = reader._region
    lost = None
    if start is not None and getattr(reader, "_absorbed", 0):  # intact records of a broken batch: name them
        lost = (reader._batch[0][0] if reader._batch_left else reader._expect, reader._absorbed)
    if reader._batch_left:
        reason = "incomplete batch at seq %d" % reader._batch[0][0]
        sealed = False
        if start is not None and start[3]:
            sealed = True
            reason = "%s (inside the batch at seq %d)" % (start[2], reader._batch[0][0])
        start = (reader._batch_at[0], reader._batch_at[1], reason, sealed)
    if start is not None:
        reporter.report("corrupt" if start[3] else "torn", start[1], start[0],
                        reader.size - start[0], start[2], lost if start[3] else None)
        if not start[3]:
            reader.torn = TornTail(start[0], reader.size - start[0], start[1], start[2])
    if reader._line_no == 0:
        reader.torn = TornTail(0, 0, 1, "empty file (no header)")
        reporter.report("torn", 1, 0, 0, "empty file (no header)", None)


def _batch_end(reader, line):
    """The last seq of the batch that the damaged `line` breaks, or 0: the open batch's,
    or the one this line would begin, when its start is still readable
    ({"seq":S,"batch":K, with S the seq expected). Its intact lines after this one are
    part of the damage: a batch counts only whole."""
    if reader._batch_left:
        return reader._batch[0][0] + len(reader._batch) + reader._batch_left - 1
    head = b'{"seq":%d,"batch":' % reader._expect
    if reader._expect < 0 or type(line) is not bytes or not line.startswith(head):
        return 0
    end = len(head)
    while end < len(line) and 48 <= line[end] <= 57:
        end += 1
    if end == len(head) or end - len(head) > 9 or line[end:end + 1] != b",":
        return 0
    return reader._expect + int(line[len(head):end]) - 1


def _damage(reader, kind, obj):
    """Why an intact line cannot be taken where it stands (reporter mode), or None."""
    if kind == FOREIGN or not isinstance(obj, dict):
        return str(obj)
    if kind == HEADER:
        return "second header"
    if kind == PAD:
        lost = obj.get("lost")
        if lost is None or (isinstance(lost, list) and len(lost) == 2 and is_int(lost[0]) and
                            is_int(lost[1]) and lost[0] <= lost[1]):
            return None
        return "pad line of the wrong shape"
    batch = obj.get("batch", 1)
    if not is_int(obj["seq"]) or "rec" not in obj or not is_int(batch) or batch < 1:
        return "record line of the wrong shape"
    if reader._expect >= 0 and obj["seq"] < reader._expect:
        return "seq %r goes backwards (expected %d)" % (obj["seq"], reader._expect)
    if reader._batch_left and batch != 1:
        return "batch starts inside a batch"
    return None
