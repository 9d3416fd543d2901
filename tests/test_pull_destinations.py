# `mini pull` never deletes or overwrites what the user has before the new copy is
# complete and in place (from a review: `--force` into `.` removed the user's files and
# then failed to rename onto `.`, pulling nothing; a symlink LOCAL failed after the whole
# copy). A LOCAL that a pull cannot replace is refused before anything is copied: one
# line, exit 2, saying what to do instead. Real virtual board, real mpremote.
import os
import subprocess
import sys

import pytest

from minitools import device as device_cli
from minitools import pull as pull_module

from test_virtual_board import VirtualBoard, _env, mini, mpremote

MAKE = ("import os\nfrom ministore import MiniStore\nos.mkdir('/d')\n"
        "with MiniStore.open('/d/j.jsonl') as s:\n    s.append({'i': 1})\nprint('made')\n")


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    vb = VirtualBoard(tmp_path_factory.mktemp("pulldest") / "flash.bin", "esp32")
    address = vb.start("--preload", "--size-kb", "512")
    assert "made" in mpremote(address, "exec", MAKE)
    yield vb
    if vb.status() is not None:
        vb.stop(power_cut=True)


def mini_in(cwd, *args):
    """mini run from the directory cwd (LOCAL '.' or '..' is relative to it)."""
    proc = subprocess.run([sys.executable, "-m", "minitools.cli"] + [str(a) for a in args], cwd=str(cwd),
                          env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    return proc.returncode, out, err


def refused(code, err, *words):
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err


def leftovers(directory):
    return [n for n in os.listdir(str(directory)) if n.startswith(".mini-pull")]


def test_the_current_directory_is_refused_and_kept(board, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = mini_in(empty, "pull", "--port", board.address, ":d", ".")
    refused(code, err, "current directory", "./d")  # what to do instead
    assert os.listdir(str(empty)) == [] and out == ""

    full = tmp_path / "full"
    full.mkdir()
    (full / "my-notes.txt").write_text("user data\n")
    code, _, err = mini_in(full, "pull", "--force", "--port", board.address, ":d", ".")
    refused(code, err, "current directory")
    assert os.listdir(str(full)) == ["my-notes.txt"] and (full / "my-notes.txt").read_text() == "user data\n"
    code, _, err = mini_in(full, "pull", "--force", "--port", board.address, ":d", str(full) + "/")
    refused(code, err, "current directory")  # the same directory named by its absolute path
    assert not leftovers(tmp_path)


def test_a_parent_of_the_current_directory_is_refused(board, tmp_path):
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    (tmp_path / "a" / "keep.txt").write_text("x")
    for local in ("..", "../", str(tmp_path / "a"), "b/../.."):
        code, _, err = mini_in(inner, "pull", "--force", "--port", board.address, ":d", local)
        refused(code, err, "parent of the current directory")
    assert (tmp_path / "a" / "keep.txt").read_text() == "x" and os.listdir(str(inner)) == []


def test_root_and_a_mount_point_are_refused(board, tmp_path):
    code, _, err = mini_in(tmp_path, "pull", "--port", board.address, ":d", "/")
    refused(code, err, "root directory")
    if os.path.ismount("/proc"):
        code, _, err = mini_in(tmp_path, "pull", "--port", board.address, ":d", "/proc")
        refused(code, err, "mount point")


@pytest.mark.parametrize("content", [[], ["keep.txt"]], ids=["empty", "full"])
def test_a_symlink_is_refused_before_copying(board, tmp_path, content):
    real = tmp_path / "real"
    real.mkdir()
    for name in content:
        (real / name).write_text("mine")
    link = tmp_path / "link"
    os.symlink(str(real), str(link))
    for local in (link, str(link) + "/"):
        code, _, err = mini("pull", "--force", "--port", board.address, ":d", local)
        refused(code, err, "is a symlink", "name the directory itself")
    assert os.path.islink(str(link)) and sorted(os.listdir(str(real))) == content
    assert not leftovers(tmp_path)
    dangling = tmp_path / "dangling"
    os.symlink(str(tmp_path / "nowhere"), str(dangling))
    code, _, err = mini("pull", "--port", board.address, ":d", dangling)
    refused(code, err, "is a symlink")
    assert os.path.islink(str(dangling)) and not os.path.exists(str(tmp_path / "nowhere"))


def test_an_existing_directory_is_replaced_only_by_a_complete_copy(board, tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    code, out, err = mini("pull", "--port", board.address, ":d", local)  # empty: no --force needed
    assert code == 0, err
    assert os.listdir(str(local)) == ["j.jsonl"] and "OK" in out
    (local / "stale.txt").write_text("old")
    code, out, err = mini("pull", "--force", "--port", board.address, ":d", local)
    assert code == 0, err
    assert os.listdir(str(local)) == ["j.jsonl"] and not leftovers(tmp_path)
    code, _, err = mini("pull", "--force", "--port", board.address, ":no-such", local)
    refused(code, err, "no such file or directory on the device")
    assert os.listdir(str(local)) == ["j.jsonl"]


def test_the_old_directory_comes_back_if_the_new_copy_cannot_be_put_in_place(board, tmp_path, monkeypatch):
    # No real part fails this rename on demand, so this one fault is injected: the rename
    # of the complete copy onto LOCAL, after the old LOCAL was moved aside.
    local = tmp_path / "local"
    local.mkdir()
    (local / "mine.txt").write_text("precious")
    real_rename = os.rename

    def rename(src, dst):
        if os.path.basename(str(src)).startswith(".mini-pull-") and str(dst) == str(local):
            raise OSError(5, "injected I/O error")
        return real_rename(src, dst)

    monkeypatch.setattr(pull_module.os, "rename", rename)
    with pytest.raises(OSError, match="injected"):
        device_cli.pull(board.address, ":d", str(local), force=True, progress=False)
    assert os.listdir(str(local)) == ["mine.txt"] and (local / "mine.txt").read_text() == "precious"
    assert not leftovers(tmp_path)
