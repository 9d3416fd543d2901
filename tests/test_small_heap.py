# Recovery fits in a small heap (issue 14): a journal whose torn tail is far larger
# than the heap opens (and, padded, opens again) on the MicroPython unix port with a
# 128 KB heap (an ESP32 without PSRAM), and a damaged region that large in the middle
# is CorruptRecord, not MemoryError. The MCU build runs the same in
# tests/core/test_long_lines.py (tests/test_mcu.py).
import os
import sys

from mpdriver import run_micropython

from ministore import MiniStore, encode_json, record_line

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROGRAM = """
import sys
sys.path.insert(0, %(shared)r)
from ministore import MiniStore, CorruptRecord
try:
    with MiniStore.open(%(torn)r) as store:
        before = store.seq
        store.append({"after": "recovery"})
    with MiniStore.open(%(torn)r) as again:  # the pad over the 200 KB is as long: read in pieces too
        pass
    print("opened", before, store.seq, again.seq)
except MemoryError as exc:
    print("MemoryError", exc)
try:
    MiniStore.replay(%(middle)r)
    print("no error")
except CorruptRecord as exc:
    print("corrupt", exc.line, exc.offset)
except MemoryError as exc:
    print("MemoryError", exc)
"""


def test_a_torn_tail_far_larger_than_the_heap_opens_in_128k(tmp_path):
    # As .mpy, as a board would load it (compiling the .py source alone needs more
    # than 128 KB on the 64-bit unix port).
    sys.path.insert(0, os.path.join(TOP, "micropython"))
    import build_mpy
    mpy = str(tmp_path / "mpy")
    build_mpy.build(mpy)
    torn = str(tmp_path / "torn.jsonl")
    with MiniStore.open(torn) as store:
        for i in range(5):
            store.append({"i": i})
    good = open(torn, "rb").read()
    with open(torn, "ab") as f:
        f.write(b'{"seq":6,"rec":"' + b"a" * 200 * 1024)  # a 200 KB record the power cut tore
    middle = str(tmp_path / "middle.jsonl")
    with open(middle, "wb") as f:
        f.write(good + b"b" * 300 * 1024 + b"\n" + record_line(6, encode_json(6)))
    code, out = run_micropython(["-c", PROGRAM % {"shared": mpy, "torn": torn,
                                                   "middle": middle}], heap="128K")
    assert code == 0, out
    assert "opened 5 6 6" in out, out
    assert "corrupt 7 %d" % len(good) in out, out
    assert MiniStore.replay(torn) == [{"i": i} for i in range(5)] + [{"after": "recovery"}]
