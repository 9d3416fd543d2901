# A journal written on MicroPython reads on CPython, and the reverse, with
# non-ASCII strings, escapes, floats at the edges of the range, and big ints.
import crossdata
from mpdriver import run_micropython

PRELUDE = "import sys; sys.path.insert(0, 'shared'); sys.path.insert(0, 'tests/core'); import crossdata; "


def test_micropython_writes_cpython_reads(tmp_path):
    path = str(tmp_path / "from_mp.jsonl")
    code, out = run_micropython(["-c", PRELUDE + "crossdata.write(%r); print('written')" % path])
    assert code == 0 and "written" in out, out
    crossdata.check(path)


def test_cpython_writes_micropython_reads(tmp_path):
    path = str(tmp_path / "from_cpython.jsonl")
    crossdata.write(path)
    code, out = run_micropython(["-c", PRELUDE + "print(crossdata.check(%r))" % path])
    assert code == 0 and "checked 10 records" in out, out


def test_same_bytes_on_both_runtimes_for_ascii_and_unicode(tmp_path):
    # Member order inside a record may differ (MicroPython dicts are unordered),
    # but a single-member record must encode to the very same line.
    mp_path = str(tmp_path / "mp.jsonl")
    py_path = str(tmp_path / "py.jsonl")
    script = "from ministore import MiniStore\nwith MiniStore.open(%r) as s:\n    s.append({'k': 'caf\\u00e9 0.1'})\n    s.append([0.1, 2 ** 64])\n"
    code, out = run_micropython(["-c", PRELUDE + "exec(%r)" % (script % mp_path)])
    assert code == 0, out
    exec(script % py_path)
    assert open(mp_path, "rb").read() == open(py_path, "rb").read()
