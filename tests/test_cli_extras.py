# Issue 17, the CLI: `mini --version`, `mini state --mutators FILE.py`, `mini plot`,
# and the package metadata (the license in its current form: no setuptools warning).
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from ministore import MiniStore
from ministate import StateManager
from miniqueue import MiniQueue

import minitools
from minitools import plot as plotting

from test_cli import mini, TOP, demo_mutators


def test_version():
    code, out, err = mini("--version")
    assert code == 0 and out.strip() == "mini %s" % minitools.__version__, err
    try:
        from importlib.metadata import version
        assert version("mini-bricks") == minitools.__version__  # pyproject reads it (dynamic version)
    except ImportError:  # Python 3.7: no importlib.metadata
        pass


def _state_dir(tmp_path):
    d = str(tmp_path / "state")
    with StateManager.open(d, initial={"value": 0}, mutators=[demo_mutators.Inc], snapshot_every=None) as sm:
        sm.apply(demo_mutators.Inc(by=5))
        sm.create_snapshot()
        sm.apply(demo_mutators.Inc(by=2))
    return d


def test_state_mutators_from_a_file_path(tmp_path):
    d = _state_dir(tmp_path)
    elsewhere = tmp_path / "app"
    elsewhere.mkdir()
    shutil.copy(demo_mutators.__file__, str(elsewhere / "my_mutators.py"))
    expected = {"seq": 2, "snapshot_seq": 1, "state": {"value": 7}}
    for given in (str(elsewhere / "my_mutators.py"), os.path.join("app", "my_mutators.py")):
        code, out, err = mini("state", d, "--mutators", given, cwd=str(tmp_path))
        assert code == 0 and json.loads(out) == expected, err
    code, out, err = mini("state", d, "--mutators", "demo_mutators")  # a module name still works
    assert code == 0 and json.loads(out) == expected, err
    code, _, err = mini("state", d, "--mutators", str(tmp_path / "none.py"))
    assert code == 2 and "no such mutators file" in err and len(err.strip().splitlines()) == 1
    (elsewhere / "broken.py").write_text("import no_such_module_xyz\n")
    code, _, err = mini("state", d, "--mutators", str(elsewhere / "broken.py"))
    assert code == 2 and "no_such_module_xyz" in err and len(err.strip().splitlines()) == 1
    (elsewhere / "typo.py").write_text("class Inc(:\n")
    code, _, err = mini("state", d, "--mutators", str(elsewhere / "typo.py"))
    assert code == 2 and "typo.py" in err and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------ plot

matplotlib = pytest.importorskip("matplotlib", reason="mini plot needs matplotlib (pip install '.[plot]')")


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", head
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_plot_a_field_over_seq(tmp_path):
    journal = str(tmp_path / "sensor.jsonl")
    with MiniStore.open(journal) as store:
        for i in range(40):
            store.append({"temp_c": 20 + i % 7 + 0.5, "t": 1700000000 + 60 * i})
        store.append({"note": "no temperature here"})
        store.append({"temp_c": True})  # a bool is not a number
    out = tmp_path / "temp.png"
    code, stdout, err = mini("plot", journal, "--field", "temp_c", "--out", out)
    assert code == 0, err
    assert "plotted 40 points of temp_c over seq" in stdout and "2 records without it skipped" in stdout
    width, height = _png_size(out)
    assert width > 200 and height > 100

    saved, count, skipped, line = plotting.plot(journal, "temp_c", out=str(tmp_path / "again.png"))
    assert count == 40 and skipped == 2 and len(line.get_xdata()) == 40
    assert list(line.get_xdata()) == list(range(1, 41))
    assert list(line.get_ydata()) == [20 + i % 7 + 0.5 for i in range(40)]


def test_plot_over_a_time_field_and_in_a_queue(tmp_path):
    journal = str(tmp_path / "log.jsonl")
    with MiniStore.open(journal) as store:
        for i in range(12):
            store.append({"at": "2026-01-02T03:%02d:00Z" % i, "temp_c": i})
    _, count, _, line = plotting.plot(journal, "temp_c", x="at", out=str(tmp_path / "t.png"))
    assert count == 12 and len(line.get_xdata()) == 12
    code, stdout, err = mini("plot", journal, "--field", "temp_c", "--x", "at", cwd=str(tmp_path))
    assert code == 0 and "to temp_c.png" in stdout, err  # the default name, in the cwd
    _png_size(tmp_path / "temp_c.png")

    outbox = str(tmp_path / "outbox")
    with MiniQueue.open(outbox) as q:
        for i in range(9):
            q.put({"reading": i, "temp_c": 18 + i})
        q.ack(q.get()[0])
    _, count, skipped, line = plotting.plot(outbox, "temp_c", out=str(tmp_path / "q.png"))  # found in {"put": M}
    # skipped: the ack (it replaced its get, which was never written: FORMAT.md 5.2)
    assert count == 9 and list(line.get_ydata()) == [18 + i for i in range(9)] and skipped == 1
    _, count, _, _ = plotting.plot(outbox, "put.reading", out=str(tmp_path / "r.png"))  # a dotted path
    assert count == 9


def test_plot_errors(tmp_path):
    journal = str(tmp_path / "j.jsonl")
    with MiniStore.open(journal) as store:
        store.append({"a": 1})
    code, _, err = mini("plot", journal, "--field", "temp_c", "--out", tmp_path / "x.png")
    assert code == 2 and "no record has a number at 'temp_c'" in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(str(tmp_path / "x.png"))
    code, _, err = mini("plot", tmp_path / "none.jsonl", "--field", "a")
    assert code == 2 and "no such file" in err
    csv = tmp_path / "readings.csv"
    csv.write_bytes(b"t,temp\n1,20\n")
    code, _, err = mini("plot", csv, "--field", "temp", cwd=str(tmp_path))  # not a journal: nothing to plot
    assert code == 2 and err.strip().splitlines()[-1].startswith("mini plot: "), err
    assert not os.path.exists(str(tmp_path / "temp.png"))
    before = open(journal, "rb").read()
    code, _, err = mini("plot", journal, "--field", "a", "--out", journal)  # it replaced the journal with a PNG
    assert code == 2 and "not a PNG" in err and open(journal, "rb").read() == before
    assert mini("plot", journal, "--field", "a", "--out", tmp_path / "a.png")[0] == 0
    assert mini("plot", journal, "--field", "a", "--out", tmp_path / "a.png")[0] == 0  # a PNG: drawn again


# ------------------------------------------------------------------ packaging

def test_the_wheel_builds_without_a_license_deprecation_warning(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "--disable-pip-version-check",
                           "-w", str(tmp_path), TOP], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, out[-3000:]
    # (the old `license = { text = "MIT" }` printed "BuildBackendWarning: `project.license` as a TOML table is deprecated")
    assert "deprecat" not in out.lower() and "BuildBackendWarning" not in out, out[-3000:]
    wheel = [n for n in os.listdir(str(tmp_path)) if n.endswith(".whl")][0]
    with zipfile.ZipFile(str(tmp_path / wheel)) as z:
        meta = z.read([n for n in z.namelist() if n.endswith("/METADATA")][0]).decode()
    assert "License-Expression: MIT" in meta and "Version: %s" % minitools.__version__ in meta
    assert "Provides-Extra: plot" in meta
