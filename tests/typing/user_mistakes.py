"""Mistakes the stubs must catch: pyright (strict) reports an error on every line
marked `# error` and on no other (tests/test_user_types.py). Never run."""
from __future__ import annotations

from miniflash import Region
from miniforward import Forwarder
from miniqueue import MiniQueue
from ministate import Loaded, Set, StateManager
from ministore import MiniStore


class NotAFlash:
    def ioctl(self, op: int, arg: int) -> int:
        return 0


def mistakes(region: Region) -> None:
    store = MiniStore.open("j.jsonl")
    store.append(b"raw bytes")  # error: JSON cannot store bytes
    store.append((1, 2))  # error: a tuple reads back as a list
    store.append({1, 2})  # error: a set
    store.append({1: "one"})  # error: JSON object keys are str
    MiniStore.open("j.jsonl", sync="sometimes")  # error: "always" or an int
    seq: str = store.append({})  # error: a seq is an int
    pads: str = MiniStore.stream(region).pads  # error: a region's reader counts pads in an int
    MiniStore.open(NotAFlash())  # error: no readblocks/writeblocks

    q = MiniQueue.open("q", on_full="block")  # error: "reject" or "drop_oldest"
    print(q.get()[0])  # error: get() may return None
    q.ack("1")  # error: an id is an int
    mid, message, deliveries = q.get() or (0, None)  # error: two values, not three

    sm = StateManager.open("s", mutators=[Set("k", 1)])  # error: classes, not instances
    sm.apply(Set)  # error: an instance, not the class
    loaded: Loaded = StateManager.load("s")
    name: str = loaded.seq  # error: seq is an int
    Forwarder(q, object(), "dev1")  # error: no transport methods
    print(seq, mid, message, name, pads)
