"""A KeyboardInterrupt at every bytecode of an open leaves the path free (CPython: opcode
tracing; tests/core/test_interrupted_open.py raises one where the registry was most
exposed, on both runtimes). Before the registry's entries had owners, 45 of MiniStore.open's
1,220 bytecodes left the path held until the process exited (LockedError at every later
open), all in minishim._acquire and _Holder.__init__."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(os.path.dirname(HERE), "shared")
sys.path.insert(0, os.path.join(HERE, "mp"))
import blockdev  # noqa: E402
import minishim  # noqa: E402
from ministore import MiniStore  # noqa: E402
from miniqueue import MiniQueue  # noqa: E402
from ministate import StateManager  # noqa: E402


def interrupted_at(opener, k):
    """Run opener() with a KeyboardInterrupt raised at its k-th bytecode in shared/. Returns
    whether it ran that far."""
    seen = [0]

    def tracer(frame, event, arg):
        if not frame.f_code.co_filename.startswith(SHARED):
            return None
        frame.f_trace_opcodes = True
        if event == "opcode":
            seen[0] += 1
            if seen[0] == k:
                raise KeyboardInterrupt
        return tracer
    sys.settrace(tracer)
    try:
        brick = opener()
    except KeyboardInterrupt:
        brick = None
    finally:
        sys.settrace(None)
    if brick is not None:
        brick.close()
    return seen[0] >= k


OPENERS = {
    "store": lambda d: (lambda: MiniStore.open(d + "/j.jsonl")),
    "queue": lambda d: (lambda: MiniQueue.open(d + "/q")),
    "state": lambda d: (lambda: StateManager.open(d + "/s", initial={"n": 1})),
    "flash store": lambda d: (lambda dev=blockdev.RAMFlash(4096, 4): MiniStore.open(dev)),
}


@pytest.mark.parametrize("kind", sorted(OPENERS))
def test_an_interrupt_at_any_bytecode_of_an_open_leaves_the_path_free(kind, tmp_path):
    held = []
    k = 1
    while True:
        d = str(tmp_path / str(k))  # one each: a path left held stays held, and would hide the next
        os.mkdir(d)
        opener = OPENERS[kind](d)
        opener().close()  # made: the interrupted opens recover it
        if not interrupted_at(opener, k):
            break
        try:
            opener().close()
        except Exception as e:
            held.append((k, repr(e)))
        k += 1
    assert k > 300, "the sweep never reached the open's end: %d bytecodes" % k
    assert held == [], "%d of %d interrupted opens left the path held: %s" % (len(held), k - 1, held[:5])
    assert not [key for key in minishim._held if str(tmp_path) in str(key) or "miniflash" in str(key)]
