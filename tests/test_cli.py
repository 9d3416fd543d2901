# The `mini` host command, run as a real subprocess: outputs, exit codes, and
# one-line errors (never a traceback).
import json
import os
import subprocess
import sys

import pytest

from ministore import MiniStore, record_line, encode_json
from ministate import StateManager
from miniqueue import MiniQueue

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "fixtures"))
import demo_mutators  # noqa: E402


def mini(*args, cwd=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(TOP, "shared"), os.path.join(TOP, "cpython"),
                                         os.path.join(TOP, "tests", "fixtures")])
    proc = subprocess.run([sys.executable, "-m", "minitools.cli"] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert "Traceback" not in err, err
    return proc.returncode, out, err


def make_journal(path, count=6):
    with MiniStore.open(str(path)) as store:
        for i in range(count):
            store.append({"i": i, "s": "caf\u00e9"})
    return str(path)


def test_cat_prints_json_lines(tmp_path):
    path = make_journal(tmp_path / "j.jsonl")
    code, out, _ = mini("cat", path)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and lines[0] == {"seq": 1, "rec": {"i": 0, "s": "caf\u00e9"}} and len(lines) == 6
    code, out, _ = mini("cat", path, "--from-seq", 5, "--raw")
    assert [json.loads(line) for line in out.splitlines()] == [{"i": 4, "s": "caf\u00e9"}, {"i": 5, "s": "caf\u00e9"}]


def test_verify_clean_and_damaged(tmp_path):
    path = make_journal(tmp_path / "j.jsonl")
    assert mini("verify", path)[0] == 0
    with open(path, "ab") as f:
        f.write(b'{"seq":7,"rec":')
    code, out, _ = mini("verify", path)
    assert code == 1 and "torn" in out and "line 8" in out
    code, out, _ = mini("verify", "--json", path)
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    problem = report["paths"][0]["problems"][0]
    assert problem["kind"] == "torn" and problem["line"] == 8 and problem["offset"] > 0


def _flip_middle(path):
    data = open(path, "rb").read()
    at = data.index(b'{"seq":3') + 10
    open(path, "wb").write(data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1:])
    return data


@pytest.mark.parametrize("damage", ["torn_tail", "flipped_middle", "incomplete_batch"])
def test_repair_moves_exactly_the_removed_bytes(tmp_path, damage):
    path = make_journal(tmp_path / "j.jsonl")
    original = open(path, "rb").read()
    if damage == "torn_tail":
        extra = b'{"seq":7,"rec":{"i":6'
        with open(path, "ab") as f:
            f.write(extra)
        expected_removed = [extra]
    elif damage == "flipped_middle":
        _flip_middle(path)
        start = original.index(b'{"seq":3')
        end = original.index(b'{"seq":4')
        expected_removed = [open(path, "rb").read()[start:end]]
    else:
        batch = record_line(7, encode_json("b1"), 3) + record_line(8, encode_json("b2"))
        with open(path, "ab") as f:
            f.write(batch)
        expected_removed = [batch]
    before = open(path, "rb").read()
    code, out, _ = mini("repair", path)
    assert code == 0 and "dry run" in out
    assert open(path, "rb").read() == before  # the dry run changed nothing
    code, out, _ = mini("repair", path, "--apply")
    assert code == 0, out
    sides = sorted(p for p in os.listdir(tmp_path) if ".removed-at-" in p)
    assert [open(tmp_path / p, "rb").read() for p in sides] == expected_removed
    assert mini("verify", path)[0] == 0
    with MiniStore.open(path) as store:  # the repaired journal opens and appends
        nxt = store.append("after repair")
    records = MiniStore.replay(path)
    assert records[-1] == "after repair"
    if damage == "flipped_middle":
        assert nxt == 7 and len(records) == 6  # seq 3 is gone (in the side file), the others keep their seqs
        assert MiniStore.stream(path) is not None
        reader = MiniStore.stream(path)
        assert [seq for seq, _ in reader] == [1, 2, 4, 5, 6, 7] and reader.lost == [(3, 3)]
        code, out, _ = mini("stats", path, "--json")  # and stats says so, not only "6 records"
        assert code == 0 and json.loads(out)["lost_in_repairs"] == [[3, 3]], out
    else:
        assert nxt == 7 and len(records) == 7


def test_repair_writes_to_no_file_there_before_it(tmp_path):
    # From a review: a second repair at the same offset overwrote the first's side file
    # (an acknowledged record's only copy), and a side file name that was a symlink was
    # written through; the repaired journal was a new file, mode 0644, and a symlinked
    # journal became a regular file, its target left damaged.
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    path = make_journal(real_dir / "j.jsonl")
    os.chmod(path, 0o600)
    link = tmp_path / "j.jsonl"
    os.symlink(path, link)
    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"keep me")
    at = _flip_middle(path).index(b'{"seq":3')
    flipped = open(path, "rb").read()
    os.symlink(precious, path + ".removed-at-%d" % at)  # where the side file goes
    code, out, err = mini("repair", link, "--apply")
    assert code == 0, (out, err)
    assert precious.read_bytes() == b"keep me"
    assert os.path.islink(link) and os.stat(path).st_mode & 0o777 == 0o600
    side1 = path + ".removed-at-%d.1" % at
    kept = open(side1, "rb").read()
    assert kept == flipped[at:flipped.index(b'{"seq":4')]  # the damaged line, under a fresh name
    # damage the pad that took its place: the second repair at that offset keeps the first's bytes
    data = open(path, "rb").read()
    open(path, "wb").write(data[:at + 3] + b"X" + data[at + 4:])
    code, out, err = mini("repair", path, "--apply")
    assert code == 0, (out, err)
    assert open(side1, "rb").read() == kept and os.path.exists(path + ".removed-at-%d.2" % at)
    assert mini("verify", link)[0] == 0


def test_repair_refuses_a_journal_with_other_hard_links(tmp_path):
    path = make_journal(tmp_path / "j.jsonl")
    os.link(path, tmp_path / "other-name.jsonl")
    _flip_middle(path)
    before = open(path, "rb").read()
    code, _, err = mini("repair", path, "--apply")
    assert code == 2 and "hard links" in err and len(err.strip().splitlines()) == 1
    assert open(path, "rb").read() == before and not [p for p in os.listdir(tmp_path) if "removed" in p]


def test_repair_refuses_while_a_writer_has_it(tmp_path):
    path = make_journal(tmp_path / "j.jsonl")
    with open(path, "ab") as f:
        f.write(b"{torn")
    with MiniStore.open(path) as store:  # recovery already cut it... damage it again under the lock
        with open(path, "ab") as f:
            f.write(b'{"seq":99,')
        code, _, err = mini("repair", path, "--apply")
        assert code == 2 and "open for writing" in err and len(err.strip().splitlines()) == 1


def test_stats_and_state_of_a_state_directory(tmp_path):
    d = str(tmp_path / "state")
    with StateManager.open(d, initial={"value": 0}, mutators=[demo_mutators.Inc], snapshot_every=None) as sm:
        sm.apply(demo_mutators.Inc(by=5))
        sm.create_snapshot()
        sm.apply(demo_mutators.Inc(by=2))
    code, out, _ = mini("stats", d, "--json")
    stats = json.loads(out)
    assert code == 0 and stats["kind"] == "state" and stats["last_seq"] == 2 and stats["last_snapshot_seq"] == 1
    code, out, _ = mini("state", d, "--mutators", "demo_mutators")
    assert code == 0 and json.loads(out) == {"seq": 2, "snapshot_seq": 1, "state": {"value": 7}}
    code, out, _ = mini("state", d)
    assert code == 0 and "snapshot at seq 1" in out and '"Inc":{"by":2}' in out
    assert mini("verify", d)[0] == 0
    assert mini("cat", d)[0] == 0


def test_stats_of_a_queue(tmp_path):
    d = str(tmp_path / "outbox")
    with MiniQueue.open(d) as q:
        for i in range(3):
            q.put({"t": i})
        q.get()
    code, out, _ = mini("stats", d, "--json")
    stats = json.loads(out)
    assert code == 0 and stats["kind"] == "queue"
    assert (stats["ready"], stats["in_flight"], stats["dead"]) == (2, 1, 0)
    assert mini("verify", d)[0] == 0


def test_verify_finds_a_compacted_state_without_snapshot(tmp_path):
    d = str(tmp_path / "state")
    with StateManager.open(d, initial={"value": 0}, mutators=[demo_mutators.Inc], keep=1) as sm:
        sm.apply(demo_mutators.Inc(by=1))
        sm.create_snapshot()
        sm.apply(demo_mutators.Inc(by=1))
    for name in os.listdir(d):
        if name.startswith("snap-"):  # torn by a crash (bytes of another shape are not ours: exit 2)
            snap = os.path.join(d, name)
            data = open(snap, "rb").read()
            open(snap, "wb").write(data[:len(data) // 2])
    code, out, _ = mini("verify", d)
    assert code == 1 and "snap-" in out


@pytest.mark.parametrize("args, message", [
    (["cat", "/no/such/journal"], "no such file"),
    (["verify", "/no/such/journal"], "no such file"),
    (["stats", "/no/such/dir"], "no such file"),
    (["repair", "/no/such/journal"], "no such journal"),
    (["state", "/no/such/dir"], "no such directory"),
])
def test_missing_paths_are_one_line_errors(args, message):
    code, out, err = mini(*args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_wrong_format_is_a_one_line_error(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_bytes(b'{"hello":"world"}\n')
    code, _, err = mini("cat", path)
    assert code == 2 and "not a ministore journal" in err
    code, out, err = mini("verify", path)  # not damage: bad input (issue 12)
    assert code == 2 and "not a ministore journal" in err and not out
    code, _, err = mini("repair", path)
    assert code == 2 and "not a ministore journal" in err
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    code, _, err = mini("stats", empty)
    assert code == 2 and "no journal segments" in err
    code, _, err = mini("state", tmp_path, "--mutators", "no_such_module_xyz")
    assert code == 2 and "cannot import" in err


def test_usage_errors_exit_2():
    code, _, err = mini()
    assert code == 2
