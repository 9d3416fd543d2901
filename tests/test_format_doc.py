# FORMAT.md's examples are real: every line in its ```journal and ```snapshot blocks
# is intact (its CRC matches), and the example journals read as the text says.
import os
import re

from ministore import MiniStore, parse_line
from minisnap import read_snapshot

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blocks(kind):
    text = open(os.path.join(TOP, "FORMAT.md"), encoding="utf-8").read()
    return [b.encode("utf-8") for b in re.findall(r"```%s\n(.*?)```" % kind, text, re.S)]


def test_every_example_line_is_intact():
    found = blocks("journal") + blocks("snapshot")
    assert len(found) == 4
    for block in found:
        for line in block.splitlines(keepends=True):
            kind, obj = parse_line(line)
            assert kind is not None and isinstance(obj, dict), (line, obj)


def test_the_example_journals_read_as_described(tmp_path):
    first, queue, checkpoint = blocks("journal")
    path = tmp_path / "j.jsonl"
    path.write_bytes(first)
    reader = MiniStore.stream(str(path))
    assert [seq for seq, _ in reader] == [1, 2, 3, 4, 7] and reader.torn is None
    assert reader.lost == [(5, 6)] and reader.pads == 2
    snap = tmp_path / "snap-00000001.json"
    snap.write_bytes(blocks("snapshot")[0])
    assert read_snapshot(str(snap)) == ({"value": 45}, 4)
    path.write_bytes(queue)
    assert MiniStore.replay(str(path)) == [{"put": {"t": 23.5}}, {"get": 1}, {"ack": 1}]
    path.write_bytes(checkpoint)
    assert [seq for seq, _ in MiniStore.stream(str(path))] == [4, 5]
