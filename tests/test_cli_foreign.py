# mini on a file it did not write: "not a ministore journal", exit 2, never called a
# torn header, never rewritten (FORMAT.md 2.1).
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "core"))
from test_cli import mini  # noqa: E402
from test_foreign_files import FOREIGN  # noqa: E402


@pytest.mark.parametrize("name,data", FOREIGN, ids=[name for name, _ in FOREIGN])
def test_every_command_refuses_a_foreign_file_and_changes_nothing(tmp_path, name, data):
    path = tmp_path / "data.jsonl"
    path.write_bytes(data)
    for command in (["cat"], ["stats"], ["verify"], ["repair"], ["repair", "--apply"]):
        code, out, err = mini(*command, path)
        assert code == 2, (command, code, out, err)
        assert "not a ministore journal" in err, (command, err)
        assert "torn" not in out + err and "repair" not in out, (command, out, err)
        assert path.read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == ["data.jsonl"]  # no side file either


def test_a_foreign_segment_in_a_directory_is_refused(tmp_path):
    (tmp_path / "journal-00000001.jsonl").write_bytes(b"a,b\n1,2\n")
    for command in (["verify"], ["stats"], ["cat"]):
        code, _, err = mini(*command, tmp_path)
        assert code == 2 and "not a ministore journal" in err, (command, err)
    assert (tmp_path / "journal-00000001.jsonl").read_bytes() == b"a,b\n1,2\n"


def test_bad_options_and_user_code_are_one_line_errors_not_tracebacks(tmp_path):
    # from a review: each of these printed a traceback (exit 1, which means "verify
    # found problems")
    (tmp_path / "sd").mkdir()
    (tmp_path / "raising.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "mut.py").write_text("from ministate import Mutator\n")
    dump = tmp_path / "dump.bin"
    dump.write_bytes(b"\xff" * 8192)
    for args, words in (
            (["state", tmp_path / "sd", "--mutators", tmp_path / "raising.py"], "boom"),
            (["state", tmp_path / "sd", "--mutators", tmp_path / "mut.py", "--initial", "{bad"], "not JSON"),
            (["cat", dump, "--offset", "0", "--sector-size", "0"], "--sector-size"),
            (["image", "extract", dump, "--region", "--sector-size", "-4096", tmp_path / "o1"], "--sector-size"),
            (["image", "extract", dump, tmp_path / "o2", "--board", "esp32", "--block-count", "-3"], "--block-count")):
        code, out, err = mini(*args)
        assert code == 2 and words in err, (args, code, out, err)
        assert err.strip().splitlines()[-1].startswith("mini"), err


def test_a_region_dump_at_the_wrong_offset_is_an_error_not_an_empty_journal(tmp_path):
    import random
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(random.Random(7).getrandbits(8) for _ in range(8192)))
    for args in (["cat", noise, "--offset", "0", "--size", "8192"],
                 ["image", "extract", noise, "--region", "--offset", "0", "--size", "8192", tmp_path / "out"]):
        code, out, err = mini(*args)
        assert code == 2 and "--offset" in err and not out, (args, code, out, err)
    erased = tmp_path / "erased.bin"
    erased.write_bytes(b"\xff" * 8192)  # a region with no journal yet: empty, not an error
    assert mini("cat", erased, "--offset", "0", "--size", "8192")[:2] == (0, "")


def test_image_extract_force_writes_through_no_symlink(tmp_path):
    erased = tmp_path / "erased.bin"
    erased.write_bytes(b"\xff" * 8192)
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, out / "journal.jsonl")
    code, _, err = mini("image", "extract", erased, "--region", "--offset", "0", "--size", "8192", out, "--force")
    assert code == 2 and "symlink" in err and victim.read_text() == "keep me"


def test_verify_skips_a_fifo_in_a_folder_and_refuses_one_named(tmp_path):
    # a FIFO named *.jsonl blocked verify for ever
    from test_cli import make_journal
    make_journal(tmp_path / "j.jsonl")
    os.mkfifo(str(tmp_path / "pipe.jsonl"))
    code, out, err = mini("verify", tmp_path)
    assert code == 0 and "pipe.jsonl" not in out, (out, err)
    code, _, err = mini("verify", tmp_path / "pipe.jsonl")
    assert code == 2 and "not a regular file" in err
