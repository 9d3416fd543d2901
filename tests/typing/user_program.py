"""A user's program that uses every brick the way README.md shows it, written for
pyright in strict mode against the installed stubs (tests/test_user_types.py builds
the wheel, installs it and checks this file, then runs it).

    python user_program.py DIR     (DIR: a scratch folder; prints "user program: ok")
"""
from __future__ import annotations

import asyncio
import json
import pathlib
import sys
from typing import Any, TypedDict

from miniflash import Region, RegionFull, SubDevice
from miniflashlog import read_region
from miniforward import Forwarder, IdentityError, LinkDown, check_device
from minilog import CompactionGap, SegmentedLog, read_segments, segment_files
from miniqueue import MiniQueue, QueueFull, UnknownMessage
from minisnap import NotFound, SnapStore
from ministate import KEY_VALUE, Delete, Loaded, Mutator, Set, StateManager, Update
from ministore import (ClosedError, CorruptRecord, FormatError, LockedError, MiniError, MiniStore, TornTail,
                       encode_json)


class Reading(TypedDict):
    t: float
    unit: str


class RAMFlash:
    """A NOR flash in RAM with the extended block interface (an erase sets 0xFF, a program
    clears bits): what esp32.Partition or rp2.Flash is on a board."""

    def __init__(self, block_size: int, blocks: int) -> None:
        self.block_size = block_size
        self.blocks = blocks
        self.data = bytearray(b"\xff" * block_size * blocks)

    def readblocks(self, block: int, buf: bytearray, offset: int = 0) -> None:
        start = block * self.block_size + offset
        buf[:] = self.data[start:start + len(buf)]

    def writeblocks(self, block: int, buf: bytes, offset: int = 0) -> None:
        start = block * self.block_size + offset
        for i, byte in enumerate(buf):
            self.data[start + i] &= byte

    def ioctl(self, op: int, arg: int) -> int | None:
        if op == 4:
            return self.blocks
        if op == 5:
            return self.block_size
        if op == 6:
            start = arg * self.block_size
            self.data[start:start + self.block_size] = b"\xff" * self.block_size
            return 0
        return None


class Inc(Mutator):
    def __init__(self, by: int) -> None:
        self.by = by

    def apply(self, state: dict[str, int]) -> None:
        state["value"] += self.by


class Loopback:
    """A transport that acks what it is sent, as `mini ingest` does after its commit."""

    def __init__(self) -> None:
        self.inbox: list[tuple[str, bytes]] = []
        self.up = False

    def connect(self) -> None:
        self.up = True

    def subscribe(self, topic: str) -> None:
        if not self.up:
            raise LinkDown("not connected")

    def publish(self, topic: str, payload: bytes) -> None:
        sent: dict[str, Any] = json.loads(payload)
        ids = [item[0] for item in sent["m"]]
        self.inbox.append((topic.replace("/up", "/ack"), json.dumps({"i": sent["i"], "ids": ids}).encode()))

    def poll(self) -> list[tuple[str, bytes]]:
        inbox, self.inbox = self.inbox, []
        return inbox

    def close(self) -> None:
        self.up = False


def use_ministore(root: pathlib.Path) -> None:
    path = root / "state" / "journal.jsonl"
    with MiniStore.open(path) as store:
        seq: int = store.append({"Set": {"value": 42}})
        last: int = store.append_many([{"Inc": {"by": 1}}, {"Inc": {"by": 2}}])
        assert (seq, last, store.durable_seq, store.closed) == (1, 3, 3, False)
        readings: list[float] = [21.5, 21.75]
        store.append(readings)
        reading: Reading = {"t": 21.5, "unit": "C"}
        store.append(reading)
    with MiniStore.stream(path, from_seq=2) as reader:
        for seq, record in reader:
            print(seq, record)
        torn: TornTail | None = reader.torn
        assert torn is None and reader.seq == 5
    records = MiniStore.replay(path)
    assert len(records) == 5 and records.torn is None and records.seq == 5
    seen: list[int] = []
    with MiniStore.open(str(path), sync=16, base_seq=0, replay=lambda seq, record: seen.append(seq)) as store:
        assert seen == [1, 2, 3, 4, 5] and store.seq == 5
    assert encode_json({"t": 1}) == b'{"t":1}'
    try:
        MiniStore.open(path).close()
        with MiniStore.open(path):
            MiniStore.open(path)
    except LockedError as exc:
        print("second writer:", exc)
    except (CorruptRecord, FormatError, ClosedError) as exc:
        print(exc)
        raise


def use_miniflash() -> RAMFlash:
    part = RAMFlash(4096, 8)
    with MiniStore.open(Region(part, retain=8 * 1024)) as store:
        store.append({"t": 21.5})
        store.release(store.seq)
        assert store.wear()[0] >= 1
    for seq, record in MiniStore.stream(part):
        print(seq, record)
    halves = RAMFlash(4096, 8)  # LittleFS would take blocks 0..3, the journal 4..7
    try:
        with MiniStore.open(Region(SubDevice(halves, 4, 4), reformat=False), sync=4) as store:
            store.append_many([{"n": n} for n in range(3)])
    except (RegionFull, FormatError) as exc:
        print(exc)
        raise
    assert MiniStore.replay(Region(SubDevice(halves, 4, 4))) == [{"n": 0}, {"n": 1}, {"n": 2}]
    return part


def use_minisnap_and_ministate(root: pathlib.Path) -> None:
    snaps = SnapStore(root / "snaps", keep=2)
    try:
        snaps.restore()
    except NotFound:
        snaps.create({"value": 0}, 0)
    state, seq = snaps.restore()
    assert state == {"value": 0} and seq == 0

    sm = StateManager.open(root / "counter", initial={"value": 0}, mutators=[Inc], snapshot_every=1000)
    seq = sm.apply(Inc(by=10))
    sm.apply_many([Inc(by=1), Inc(by=2)])
    with sm.lock:
        value: int = sm.state["value"]
    assert value == 13 and seq == 1
    sm.create_snapshot()
    sm.close()
    loaded: Loaded = StateManager.load(root / "counter", initial={"value": 0}, mutators=[Inc])
    state, seq, snapshot_seq = loaded
    assert (loaded.state, loaded.seq, loaded.snapshot_seq) == (state, seq, snapshot_seq) == ({"value": 13}, 3, 3)

    with StateManager.open(root / "config", initial={}, mutators=KEY_VALUE) as config:
        config.apply(Set("wifi", {"ssid": "lab"}))
        config.apply(Update({"interval_s": 30, "unit": "C"}))
        config.apply(Delete("unit"))
        print(config.state["interval_s"])

    region = RAMFlash(4096, 8)
    with StateManager.open(root / "on-flash", initial={"value": 0}, mutators=[Inc], region=region) as sm:
        sm.apply(Inc(by=5))
    assert read_region(region) == 1


def use_minilog(root: pathlib.Path) -> None:
    log = SegmentedLog.open(root / "segments")
    log.append({"n": 1})
    log.roll()
    log.append({"n": 2})
    log.close()
    records: list[Any] = []
    try:
        last = read_segments(str(root / "segments"), 0, lambda seq, record: records.append(record))
    except CompactionGap:
        raise
    assert last == 2 and records == [{"n": 1}, {"n": 2}] and len(segment_files(str(root / "segments"))) == 2


def use_miniqueue(root: pathlib.Path) -> None:
    q = MiniQueue.open(root / "outbox", max_bytes=64 * 1024, on_full="reject", retry_delay=0, retry_max=60.0)
    mid = q.put({"t": 23.5})
    ids: list[int] = q.put_many([{"t": 1}, {"t": 2}])
    item = q.get()
    assert item is not None and item[0] == mid
    q.ack(item[0])
    again = q.get()
    assert again is not None
    q.nack(again[0])
    print(len(q), q.in_flight(), q.dead(), q.dropped, q.deliveries(ids[0]))
    peeked = q.peek()
    assert peeked is not None and peeked[0] == ids[0]
    assert q.qsize() == 2 and not q.full()
    got = q.get()
    assert got is not None
    q.dead_letter(got[0])
    for mid, msg in q:
        print(mid, msg)
        q.ack(mid)
    q.put({"t": 3})
    waited = q.get(timeout=0.5)  # blocks up to 0.5 s for a put from another thread
    assert waited is not None
    q.nack(waited[0], delay=0.01)  # not delivered again for 10 ms
    assert q.delayed() == 1

    async def consume() -> tuple[int, Any] | None:
        return await q.aget(timeout=1.0)

    retried = asyncio.run(consume())
    assert retried is not None and retried[0] == waited[0]
    q.ack(retried[0])
    try:
        q.ack(12345)
    except UnknownMessage:
        pass
    try:
        MiniQueue.open(root / "tiny", max_bytes=16).put({"message": "too big for 16 bytes"})
    except (QueueFull, ValueError):
        pass
    q.close()
    view = MiniQueue.inspect(root / "outbox")
    dead: list[tuple[int, Any, int]] = view.dead()
    assert len(view) == 0 and len(dead) == 1 and view.live_bytes() > 0

    flash = RAMFlash(4096, 8)  # the queue's journal on a raw flash region, its lock in the folder
    with MiniQueue.open(root / "flash-outbox", max_bytes=4096, region=flash) as on_flash:
        on_flash.put({"t": 1})
    assert len(MiniQueue.inspect(root / "flash-outbox", region=flash)) == 1


def use_miniforward(root: pathlib.Path) -> None:
    q = MiniQueue.open(root / "forward-outbox", max_bytes=64 * 1024, on_full="reject")
    fw = Forwarder(q, Loopback(), check_device("dev1"), batch=16)
    q.put({"t": 21.0})
    confirmed = 0
    for _ in range(3):
        confirmed += fw.pump()
    assert confirmed == 1 and fw.flush(timeout_ms=1000) and fw.idle() and fw.pending() == 0
    fw.close()
    q.close()
    try:
        check_device("no spaces")
    except (ValueError, IdentityError):
        pass


def main(argv: list[str]) -> int:
    root = pathlib.Path(argv[1])
    use_ministore(root)
    use_miniflash()
    use_minisnap_and_ministate(root)
    use_minilog(root)
    use_miniqueue(root)
    use_miniforward(root)
    try:
        raise ClosedError("every brick error is a MiniError")
    except MiniError:
        pass
    print("user program: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
