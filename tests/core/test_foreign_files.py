# A file we did not write is never changed (FORMAT.md 2.1, 3): every brick refuses
# it with FormatError and leaves it byte for byte as it was, while every state our
# own writer can leave while creating a file is still recovered.
from support import scratch, raises, read_bytes, write_bytes
from ministore import MiniStore, FormatError, header_line, seal
from minisnap import SnapStore, SnapshotError, snapshot_bytes, read_snapshot
from ministate import StateManager, Mutator
from miniqueue import MiniQueue


def _binary(n):
    out = bytearray(n)
    x = 12345
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = (x >> 16) & 0xFF
    out[0] = 0x89  # like a PNG: not "{"
    return bytes(out)


FOREIGN = (
    ("csv", b"time,temp_c\n1,20.5\n2,20.7\n"),
    ("text", b"hello world\nsecond line\n"),
    ("pretty json", b'{\n  "format": "ministore",\n  "version": 1\n}\n'),
    ("json object line", b'{"hello":"world"}\n'),
    ("binary", _binary(3000)),
    ("one line, no newline", b"just some words"),
    ("mini-rs journal", b'// MINISTORE JOURNAL v0.1.3\n{"seq":1,"data":{"a":1},"crc":1234}\n'),
    ("zeros past a header's length", b"\x00" * 200),  # a header is at most 85 bytes
    ("json array", b'[1, 2, 3]\n'),
)


def test_foreign_files_are_refused_and_left_unchanged():
    path = scratch() + "/data.jsonl"
    for name, data in FOREIGN:
        write_bytes(path, data)
        err = raises(FormatError, MiniStore.open, path)
        assert "not a ministore journal" in str(err), (name, str(err))
        raises(FormatError, MiniStore.replay, path)
        raises(FormatError, lambda: list(MiniStore.stream(path)))
        assert read_bytes(path) == data, name


def test_foreign_files_in_a_brick_directory_are_refused_and_left_unchanged():
    class Inc(Mutator):
        def __init__(self, by):
            self.by = by

        def apply(self, state):
            state["n"] += self.by

    for name, data in FOREIGN:
        for file_name in ("journal-00000001.jsonl", "snap-00000001.json"):
            d = scratch()
            path = d + "/" + file_name
            write_bytes(path, data)
            if name.startswith("zeros") and file_name.startswith("snap"):
                continue  # any length of zeros is what a cut snapshot write can leave: ours
            err = raises(FormatError, StateManager.open, d, {"n": 0}, [Inc])
            assert "not a" in str(err), (name, file_name, str(err))
            raises(FormatError, StateManager.load, d, {"n": 0}, [Inc])
            if file_name.startswith("journal"):
                raises(FormatError, MiniQueue.open, d)
                raises(FormatError, MiniQueue.inspect, d)
            assert read_bytes(path) == data, (name, file_name)


def test_every_prefix_of_every_header_we_write_is_a_torn_header_and_recovers():
    path = scratch() + "/j.jsonl"
    for base in (0, 7, 12345, 10 ** 18):
        header = header_line(base)
        for cut in range(len(header)):
            for tail in (b"", b"\x00" * (len(header) - cut)):  # an append persisted as zeros
                write_bytes(path, header[:cut] + tail)
                torn = MiniStore.replay(path)
                assert torn == [] and (cut == 0 and not tail or torn.torn is not None), (base, cut)
                with MiniStore.open(path, base_seq=base) as store:
                    assert store.seq == base
                    store.append({"n": 1})
                assert list(MiniStore.stream(path)) == [(base + 1, {"n": 1})], (base, cut)


def test_a_damaged_header_of_ours_is_not_taken_for_a_foreign_file():
    header = header_line(5)
    damaged = header.replace(b'"base_seq":5', b'"base_seq":6')  # CRC now fails
    path = scratch() + "/j.jsonl"
    write_bytes(path, damaged)
    with MiniStore.open(path, base_seq=5) as store:  # nothing after it: written again
        assert store.seq == 5
    # A newer format version, sealed by its writer, is refused and never rewritten.
    newer = seal(b'{"format":"ministore","version":2,"base_seq":5')
    write_bytes(path, newer)
    err = raises(FormatError, MiniStore.open, path)
    assert "version" in str(err)
    assert read_bytes(path) == newer


def test_every_prefix_of_a_snapshot_is_ours_and_skipped_anything_else_is_refused():
    d = scratch()
    data = snapshot_bytes({"a": [1, 2, 3]}, 9)
    path = d + "/snap-00000001.json"
    for cut in range(len(data)):
        write_bytes(path, data[:cut] + b"\x00" * (cut % 3))
        raises(SnapshotError, read_snapshot, path)
    write_bytes(path, b"a,b,c\n")
    raises(FormatError, _restore, d)
    assert read_bytes(path) == b"a,b,c\n"


def _restore(d):
    return SnapStore(d).restore()
