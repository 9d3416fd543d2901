# Issue 17: `mini verify FOLDER` and minitools.verify(FOLDER) check every journal in a
# folder (plain journals, state and queue directories, nested as `mini pull` copies a
# device's tree), one line per journal and one exit code; `mini repair DIR` repairs a
# state or queue directory's segments. Every file is written by the real bricks.
import json
import os

import pytest

from ministore import MiniStore, FormatError, record_line, encode_json
from ministate import StateManager
from miniqueue import MiniQueue

import minitools

from test_cli import mini, demo_mutators

Inc = demo_mutators.Inc


def make_tree(root):
    """A folder as `mini pull :/ pulled` leaves it: a plain journal at the top, a state
    directory and a queue directory (with its forward.jsonl) below, and files that are
    not journals."""
    os.makedirs(str(root / "data"))
    with MiniStore.open(root / "log.jsonl") as store:
        store.append_many([{"t": 1}, {"t": 2}])
        store.append({"t": 3})
    with StateManager.open(root / "data" / "state", initial={"value": 0}, mutators=[Inc],
                           snapshot_every=None) as sm:
        sm.apply(Inc(by=5))
        sm.create_snapshot()
        sm.apply(Inc(by=2))
    with MiniQueue.open(root / "data" / "outbox") as q:
        q.put_many([{"n": 1}, {"n": 2}])
        q.get()
    with MiniStore.open(root / "data" / "outbox" / "forward.jsonl") as store:
        store.append({"incarnation": "9f86d081884c7d65"})
    (root / "main.py").write_text("print('app')\n")
    (root / "config.json").write_text('{"rate": 5}\n')
    return [str(root / "log.jsonl"), str(root / "data" / "outbox"),
            str(root / "data" / "outbox" / "forward.jsonl"), str(root / "data" / "state")]


def test_verify_a_folder_that_holds_only_a_plain_journal(tmp_path):
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    with MiniStore.open(pulled / "log.jsonl") as store:
        store.append({"t": 21.5})
    code, out, err = mini("verify", pulled)
    assert code == 0, (out, err)
    assert out.splitlines() == ["%s: OK" % (pulled / "log.jsonl"), "%s: 1 journal checked, all OK" % pulled]
    report = minitools.verify(pulled)  # a pathlib.Path
    assert report.ok and report.kind == "folder" and [j.path for j in report.journals] == [str(pulled / "log.jsonl")]


def test_verify_a_pulled_tree_one_line_per_journal(tmp_path):
    pulled = tmp_path / "pulled"
    targets = make_tree(pulled)
    code, out, err = mini("verify", pulled)
    assert code == 0 and not err, (out, err)
    assert out.splitlines() == ["%s: OK" % t for t in targets] + ["%s: 4 journals checked, all OK" % pulled]
    report = minitools.verify(str(pulled))
    assert report and [(j.path, j.kind) for j in report.journals] == list(zip(targets, ["journal", "queue", "journal", "state"]))
    assert repr(report) == "<Report %r folder: 4 journals, OK>" % str(pulled)

    log = pulled / "log.jsonl"
    log.write_bytes(log.read_bytes() + b'{"seq":4,"rec":')  # a torn tail: only log.jsonl is damaged
    code, out, err = mini("verify", pulled)
    lines = out.splitlines()
    assert code == 1 and not err and len(lines) == 5, out
    assert lines[0].startswith("%s: line 5 " % log) and "torn" in lines[0]
    assert lines[1:4] == ["%s: OK" % t for t in targets[1:]]
    assert lines[4] == "%s: 4 journals checked, 1 with problems" % pulled
    code, out, _ = mini("verify", "--json", pulled)
    entry = json.loads(out)["paths"][0]
    assert code == 1 and entry["kind"] == "folder" and not entry["ok"] and len(entry["problems"]) == 1
    assert [(j["path"], j["ok"]) for j in entry["journals"]] == [(targets[0], False)] + [(t, True) for t in targets[1:]]
    report = minitools.verify(pulled)
    assert not report and [j.ok for j in report.journals] == [False, True, True, True]
    assert str(report).splitlines() == lines


def test_verify_a_queue_directory_checks_its_forward_journal_too(tmp_path):
    targets = make_tree(tmp_path)
    outbox = targets[1]
    report = minitools.verify(outbox)
    assert report.ok and report.kind == "queue" and [j.path for j in report.journals] == targets[1:3]
    with open(targets[2], "r+b") as f:  # flip a bit in the incarnation's record (its last line)
        data = f.read()
        at = data.rindex(b"9f86d0")
        f.seek(at)
        f.write(bytes([data[at] ^ 1]))
    code, out, _ = mini("verify", outbox)
    assert code == 1 and "forward.jsonl" in out and "%s: OK" % outbox in out


def test_a_file_not_ours_inside_a_folder_is_that_journals_problem(tmp_path):
    targets = make_tree(tmp_path / "pulled")
    other = tmp_path / "pulled" / "other.jsonl"
    other.write_bytes(b'{"hello":"world"}\n')
    code, out, err = mini("verify", tmp_path / "pulled")
    assert code == 1 and not err, (out, err)
    assert "other.jsonl" in out and "not a ministore journal" in out
    assert all("%s: OK" % t in out for t in targets)  # the others are still checked
    assert other.read_bytes() == b'{"hello":"world"}\n'
    code, _, err = mini("verify", other)  # named on its own: bad input, exit 2 (as before)
    assert code == 2 and "not a ministore journal" in err
    with pytest.raises(FormatError):
        minitools.verify(other)


def test_a_folder_with_no_journal_is_a_usage_error(tmp_path):
    (tmp_path / "main.py").write_text("pass\n")
    (tmp_path / "sub").mkdir()
    code, out, err = mini("verify", tmp_path)
    assert code == 2 and "no journals" in err and len(err.strip().splitlines()) == 1 and not out
    with pytest.raises(ValueError):
        minitools.verify(tmp_path)


# ------------------------------------------------------------------ mini repair DIR

def state_dir(path, keep=2):
    """Seqs 1..9 (Inc by 1..9), snapshots at 3 and 6, and the segments that reach back to
    the older one: seqs 4..6 and 7..9."""
    d = str(path)
    with StateManager.open(d, initial={"value": 0}, mutators=[Inc], snapshot_every=None, keep=keep) as sm:
        for i in range(1, 10):
            sm.apply(Inc(by=i))
            if i in (3, 6):
                sm.create_snapshot()
    segments = sorted(n for n in os.listdir(d) if n.startswith("journal-"))
    assert len(segments) == 2, segments
    return d, [os.path.join(d, n) for n in segments]


def load(d):
    with StateManager.open(d, initial={"value": 0}, mutators=[Inc]) as sm:
        return sm.state, sm.seq


def files_of(d):
    return dict((n, open(os.path.join(d, n), "rb").read()) for n in sorted(os.listdir(d)))


def flip_record(path, seq):
    data = open(path, "rb").read()
    at = data.index(b'{"seq":%d,' % seq) + 10
    open(path, "wb").write(data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1:])
    start = data.index(b'{"seq":%d,' % seq)
    return open(path, "rb").read()[start:data.index(b"\n", start) + 1]


def side_files(d):
    return sorted(n for n in os.listdir(d) if ".removed-at-" in n)


def test_repair_a_state_directory_with_a_torn_tail(tmp_path):
    d, segments = state_dir(tmp_path / "state")
    torn = b'{"seq":10,"rec":{"Inc":{"by'
    with open(segments[-1], "ab") as f:
        f.write(torn)
    before = files_of(d)
    code, out, err = mini("repair", d)
    assert code == 0 and "dry run" in out and "torn" in out and "state at seq 9" in out, (out, err)
    assert files_of(d) == before
    code, out, err = mini("repair", d, "--apply")
    assert code == 0 and "repaired" in out, (out, err)
    assert [open(os.path.join(d, n), "rb").read() for n in side_files(d)] == [torn]
    assert mini("verify", d)[0] == 0
    assert load(d) == ({"value": 45}, 9)  # nothing acknowledged was in the torn tail


def test_repair_a_corrupt_line_in_the_newest_segment(tmp_path):
    d, segments = state_dir(tmp_path / "state")
    damaged = flip_record(segments[-1], 8)  # Inc(by=8), after the newest snapshot (seq 6)
    code, out, _ = mini("verify", d)
    assert code == 1 and "seq 8" in out
    with pytest.raises(Exception):
        load(d)  # the brick refuses a corrupt line in the middle of its journal
    code, out, err = mini("repair", d, "--apply")
    assert code == 0, (out, err)
    assert [open(os.path.join(d, n), "rb").read() for n in side_files(d)] == [damaged]
    assert mini("verify", d)[0] == 0
    assert load(d) == ({"value": 45 - 8}, 9)  # seq 8 is gone (in the side file); seq 9 kept its seq
    reader = MiniStore.stream(segments[-1])
    assert [seq for seq, _ in reader] == [7, 9] and reader.lost == [(8, 8)]
    with StateManager.open(d, initial={"value": 0}, mutators=[Inc]) as sm:  # and it takes new records
        assert sm.apply(Inc(by=100)) == 10
    assert load(d) == ({"value": 137}, 10)


def test_repair_a_corrupt_line_in_an_older_segment(tmp_path):
    d, segments = state_dir(tmp_path / "state")
    damaged = flip_record(segments[0], 5)  # between the two snapshots: covered by the newest
    assert mini("verify", d)[0] == 1
    code, out, err = mini("repair", d, "--apply")
    assert code == 0 and segments[0] in out, (out, err)
    assert [open(os.path.join(d, n), "rb").read() for n in side_files(d)] == [damaged]
    assert mini("verify", d)[0] == 0
    assert load(d) == ({"value": 45}, 9)  # the newest snapshot covers seq 5: nothing lost


def test_repair_refuses_what_would_not_recover_and_changes_nothing(tmp_path):
    d = str(tmp_path / "outbox")
    with MiniQueue.open(d) as q:
        q.put({"n": 1})
        q.put({"n": 2})
        mid, _ = q.get()
        q.ack(mid)
    segment = os.path.join(d, "journal-00000001.jsonl")
    flip_record(segment, 1)  # the put of message 1: the get and ack after it name it
    before = files_of(d)
    code, out, err = mini("repair", d, "--apply")
    assert code == 2 and "would not recover" in err and "nothing changed" in err, (out, err)
    assert files_of(d) == before


def test_repair_a_queue_directory(tmp_path):
    d = str(tmp_path / "outbox")
    with MiniQueue.open(d) as q:
        q.put_many([{"n": 1}, {"n": 2}, {"n": 3}])
        mid, _ = q.get()
        q.ack(mid)
        q.get()
    segment = os.path.join(d, "journal-00000001.jsonl")
    batch = record_line(6, encode_json({"put": {"n": 4}}), 2)  # a batch cut after its first line
    with open(segment, "ab") as f:
        f.write(batch)
    code, out, err = mini("repair", d, "--apply")
    assert code == 0 and "repaired" in out and "1 ready, 1 in flight" in out, (out, err)
    assert [open(os.path.join(d, n), "rb").read() for n in side_files(d)] == [batch]
    with MiniQueue.open(d) as q:
        assert [q.get()[1] for _ in range(2)] == [{"n": 2}, {"n": 3}] and q.get() is None


def test_repair_of_a_directory_refuses_files_not_ours_and_a_running_writer(tmp_path):
    d, segments = state_dir(tmp_path / "state")
    with open(segments[-1], "ab") as f:
        f.write(b'{"seq":10,')
    foreign = os.path.join(d, "journal-00000009.jsonl")
    with open(foreign, "wb") as f:
        f.write(b"a,b\n1,2\n")
    before = files_of(d)
    for args in (["repair", d], ["repair", d, "--apply"]):
        code, out, err = mini(*args)
        assert code == 2 and "not a ministore journal" in err and "repair" not in out, (args, out, err)
        assert files_of(d) == before
    os.remove(foreign)
    with StateManager.open(d, initial={"value": 0}, mutators=[Inc]):  # the writer holds the directory
        code, _, err = mini("repair", d, "--apply")
        assert code == 2 and "open for writing" in err and len(err.strip().splitlines()) == 1
    code, out, _ = mini("repair", d)
    assert code == 0 and "nothing to repair" in out  # the writer's open cut the torn tail
    code, _, err = mini("repair", tmp_path)
    assert code == 2 and "no journal segments" in err


def test_a_snapshot_not_ours_in_a_nested_state_directory(tmp_path):
    targets = make_tree(tmp_path / "pulled")
    state = targets[3]
    (tmp_path / "pulled" / "data" / "state" / "snap-00000009.json").write_bytes(b"hello\n")
    code, out, err = mini("verify", tmp_path / "pulled")
    assert code == 1 and not err and "%s: OK" % targets[0] in out and state in out, (out, err)
    code, _, err = mini("verify", state)  # the state directory named on its own: bad input
    assert code == 2 and err
    code, _, err = mini("repair", state, "--apply")
    assert code == 2 and err
    assert (tmp_path / "pulled" / "data" / "state" / "snap-00000009.json").read_bytes() == b"hello\n"
