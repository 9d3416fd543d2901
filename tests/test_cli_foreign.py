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
