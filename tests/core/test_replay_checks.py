# Replay checks that only a rare sequence of crashes, or damage, reaches: each is
# built here directly, so that removing the check fails fast on both runtimes.
import os

from support import scratch, raises, read_bytes, write_bytes, lines
from minilog import SegmentedLog, CompactionGap, read_segments, segment_files
from miniqueue import MiniQueue


def test_a_missing_middle_segment_is_a_gap_not_silently_skipped():
    directory = scratch()
    log = SegmentedLog.open(directory)
    log.append_many([1, 2])
    log.roll()
    log.append_many([3, 4])
    log.roll()
    log.append(5)
    log.close()
    found = segment_files(directory)
    assert len(found) == 3
    os.remove(found[1][1])  # records 3 and 4: gone, and the segments around them do not meet
    seen = []
    raises(CompactionGap, SegmentedLog.open, directory, 0, lambda seq, record: seen.append(record))
    raises(CompactionGap, read_segments, directory)


def test_events_after_a_cut_checkpoint_end_it():
    # A crash cut a checkpoint (its entries landed, its end did not); the queue was
    # reopened and went on in that segment; the next checkpoint was complete, and a
    # crash came before the segment with the cut one was removed. The cut entries must
    # not join the next checkpoint's.
    directory = scratch()
    q = MiniQueue.open(directory)
    first = q.put("first")
    q.compact()                             # segment 2: a checkpoint of [first]
    older = segment_files(directory)[-1][1]
    kept = read_bytes(older)
    q.compact()                             # segment 3: the same, and segment 2 removed
    q.close()
    cut = segment_files(directory)[-1][1]
    whole = lines(cut)
    assert b'"ckpt_end"' in whole[-1]
    write_bytes(cut, b"".join(line + b"\n" for line in whole[:-1]))  # its end never landed...
    write_bytes(older, kept)                # ...so segment 2 was never removed
    q = MiniQueue.open(directory)
    assert q.get() == (first, "first")
    q.ack(first)
    second = q.put("second")                # an id above every cut entry's
    q.close()
    saved = read_bytes(cut)                 # the cut segment, as the next compaction finds it
    q = MiniQueue.open(directory)
    q.compact()                             # removes every older segment, the cut one last
    q.close()
    write_bytes(cut, saved)                 # a crash before that last removal landed
    q = MiniQueue.open(directory)
    assert q.get() == (second, "second") and q.get() is None
    q.close()


def test_a_nack_is_journaled_so_inspect_sees_the_message_ready():
    directory = scratch()
    q = MiniQueue.open(directory)
    mid = q.put("m")
    q.get()
    q.nack(mid)
    q.sync()  # a get or nack reaches the file with the next put, sync or close (FORMAT.md 5.2)
    seen = MiniQueue.inspect(directory)     # read-only, as `mini stats` reads it
    assert seen.in_flight() == 0 and len(seen) == 1
    q.get()
    q.sync()
    seen = MiniQueue.inspect(directory)
    assert seen.in_flight() == 1 and len(seen) == 0
    q.close()
