# Packaging facts kept in one place: the core is shared/*.py, and what each module
# needs is read from its imports (micropython/bricks.py). Every per-brick file is
# generated from that, and each module really imports on MicroPython with only the
# modules it declares present.
import glob
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

from mpdriver import micropython_path

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "micropython"))
import bricks  # noqa: E402


def test_generated_package_files_are_up_to_date():
    assert bricks.main(["bricks.py", "--check"]) == 0


def test_pyproject_installs_exactly_the_core():
    text = open(os.path.join(TOP, "pyproject.toml")).read()
    listed = re.search(r"^py-modules = \[([^\]]*)\]", text, re.M).group(1)
    assert sorted(re.findall(r'"(\w+)"', listed)) == bricks.core_modules()


def test_the_queue_does_not_need_snapshots():
    assert "minisnap" not in bricks.closure("miniqueue")
    assert bricks.closure("ministore") == ["minishim", "minidamage", "miniformat", "minireader", "ministore"]


@pytest.mark.parametrize("module", bricks.core_modules())
def test_each_module_imports_on_micropython_with_only_what_it_declares(tmp_path, module):
    for name in bricks.closure(module):
        shutil.copy(os.path.join(TOP, "shared", name + ".py"), tmp_path)
    probe = "import sys\nsys.path[:] = [%r]\nimport %s\nprint('imported', sorted(sys.modules))" % (
        str(tmp_path), module)
    out = subprocess.run([micropython_path(), "-c", probe], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=60).stdout.decode()
    assert "imported" in out, out
    loaded = set(re.findall(r"'(mini\w+)'", out))
    # Modules loaded on demand ("# lazy" imports, minidamage) are installed, not imported,
    # and so are those a module is used with (miniforward: a queue), not imported by it.
    assert loaded == set(bricks.closure(module, used_with=False)) - (bricks.loaded_on_demand() - {module}), out


def _manifestfile(tmp_path):
    tarballs = glob.glob(os.path.join(TOP, "..", "shared", "micropython", "micropython-*.tar.gz"))
    if not tarballs:
        pytest.skip("no MicroPython source tarball beside the repo (../shared/micropython)")
    with tarfile.open(tarballs[0]) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/tools/manifestfile.py"))
        member.name = "manifestfile.py"
        tar.extract(member, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        import manifestfile
    finally:
        sys.path.remove(str(tmp_path))
    return manifestfile


def test_each_brick_manifest_freezes_exactly_what_it_needs(tmp_path):
    mf = _manifestfile(tmp_path)
    for module in bricks.core_modules() + [None]:
        path = os.path.join(TOP, "micropython", module or "", "manifest.py")
        manifest = mf.ManifestFile(mf.MODE_FREEZE, {"MPY_DIR": str(tmp_path)})
        manifest.execute(path)
        frozen = sorted(f.target_path[:-3] for f in manifest.files())
        assert frozen == sorted(bricks.closure(module) if module else bricks.core_modules()), path
