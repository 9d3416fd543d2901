# verify(path) from Python: the check `mini verify` makes, as a Report.
import pytest

from ministore import MiniStore, FormatError
from minitools import verify, Report


def test_verify_reports_ok_and_problems(tmp_path):
    path = tmp_path / "j.jsonl"
    with MiniStore.open(path) as store:
        store.append_many([1, 2])
        store.append(3)
    report = verify(path)
    assert isinstance(report, Report) and report.ok and report and report.kind == "journal"
    assert str(report) == "%s: OK" % path and repr(report) == "<Report %r journal: OK>" % str(path)
    data = path.read_bytes()
    path.write_bytes(data[:-5])  # a torn tail
    report = verify(path)
    assert not report and len(report.problems) == 1 and report.problems[0].kind == "torn"
    assert "torn" in str(report) and repr(report).endswith("1 problem>")
    assert repr(report.problems[0]).startswith("Problem(%r, 'torn', line=4" % str(path))


def test_verify_refuses_what_is_not_ours(tmp_path):
    (tmp_path / "x.csv").write_bytes(b"a,b\n")
    with pytest.raises(FormatError):
        verify(tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError):
        verify(tmp_path / "missing")
