# Packaging facts kept in one place: the core is shared/*.py, and what each module
# needs is read from its imports (micropython/bricks.py). Every per-brick file is
# generated from that, and each module really imports on MicroPython with only the
# modules it declares present.
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

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


def _check_manifests(mf, top, mpy_dir):
    for module in bricks.core_modules() + [None]:
        path = os.path.join(top, "micropython", module or "", "manifest.py")
        manifest = mf.ManifestFile(mf.MODE_FREEZE, {"MPY_DIR": str(mpy_dir)})
        manifest.execute(path)
        frozen = sorted(f.target_path[:-3] for f in manifest.files())
        assert frozen == sorted(bricks.closure(module) if module else bricks.core_modules()), path
        for f in manifest.files():
            assert os.path.isfile(f.full_path), (path, f.full_path)


def test_each_brick_manifest_freezes_exactly_what_it_needs(tmp_path):
    _check_manifests(_manifestfile(tmp_path), TOP, tmp_path)


# ------------------------------------------------------------------ sdist and wheel
# What `python -m build` gives a user. The sdist holds all a user of the source needs: the
# Python packages, and the MicroPython packaging (mip package.json, freeze manifest.py), the
# board profiles, the examples, the docs, and ./run with the tests, benchmarks and tools it
# runs (MANIFEST.in). The wheel holds only the installable packages: the core modules
# (byte for byte shared/*.py, so the installed files can be copied to a board), minitools,
# miniboard and the stub packages.

SDIST_FOLDERS = ["micropython", "boards", "examples", "docs", "stubs", "tests", "bench", "tools",
                 "shared", "cpython"]
SDIST_FILES = ["pyproject.toml", "MANIFEST.in", "run", "conftest.py"]


def _copy_source(dest):
    """The tree as a user has it, without .venv, .git and build output: the builds run in
    this copy, so they leave no build/ or *.egg-info here and race no other build."""
    shutil.copytree(TOP, dest, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "out",
        "*.py[cod]", "*.mpy"))


def _files_under(root, folder):
    out = []
    for d, _, names in os.walk(os.path.join(root, folder)):
        out += [os.path.relpath(os.path.join(d, n), root) for n in names]
    return out


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dists")
    src, out, unpacked = tmp / "src", tmp / "dist", tmp / "unpacked"
    def build_output():  # what an in-tree build would leave beside the sources
        return {os.path.join(d, n) for d in (TOP, os.path.join(TOP, "shared")) for n in os.listdir(d)
                if n in ("build", "dist") or n.endswith(".egg-info")}
    before = build_output()
    _copy_source(str(src))
    run = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    proc = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out),
                           str(src)], **run)
    assert proc.returncode == 0, proc.stdout.decode()[-3000:]
    sdist, = glob.glob(str(out / "*.tar.gz"))
    with tarfile.open(sdist) as tar:
        modes = {m.name.split("/", 1)[1]: m.mode for m in tar.getmembers() if m.isfile()}
        tar.extractall(str(unpacked), **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    root, = glob.glob(str(unpacked / "*"))
    # The wheel from the unpacked sdist, as `python -m build` and pip make it.
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "-q", "-w", str(out), root], **run)
    assert proc.returncode == 0, proc.stdout.decode()[-3000:]
    wheel, = glob.glob(str(out / "*.whl"))
    assert build_output() <= before  # the builds wrote nothing beside the sources
    return {"src": str(src), "modes": modes, "root": root, "wheel": wheel, "tmp": tmp}


def test_the_sdist_holds_the_micropython_packaging_boards_examples_and_tests(dists):
    src, modes = dists["src"], dists["modes"]
    expected = set(SDIST_FILES) | {n for n in os.listdir(src) if n.endswith(".md")}
    for folder in SDIST_FOLDERS:
        expected |= set(_files_under(src, folder))
    for must in ["micropython/manifest.py", "micropython/mini/package.json", "micropython/ministore/manifest.py",
                 "micropython/miniqueue/package.json", "boards/esp32/main.py", "boards/rp2040/boot.py",
                 "examples/demo.py", "tests/mpdriver.py", "shared/ministore.py"]:
        assert must in expected, must  # the copy itself is what a user has
    assert sorted(expected - set(modes)) == []
    assert modes["run"] & 0o111, "./run must stay executable"
    assert [n for n in modes if n.endswith((".pyc", ".mpy")) or "__pycache__" in n] == []


def test_the_manifests_and_mip_packages_of_the_unpacked_sdist_resolve(dists):
    root = dists["root"]
    _check_manifests(_manifestfile(dists["tmp"]), root, dists["tmp"])
    # mpremote mip install DIR/package.json reads each url relative to the package.json.
    for package in glob.glob(os.path.join(root, "micropython", "*", "package.json")):
        with open(package) as f:
            urls = json.load(f)["urls"]
        assert urls, package
        for target, url in urls:
            path = os.path.normpath(os.path.join(os.path.dirname(package), url))
            assert os.path.isfile(path), (package, url)
            assert os.path.basename(path) == target


def test_the_wheel_holds_the_core_modules_tools_and_stubs(dists):
    with zipfile.ZipFile(dists["wheel"]) as z:
        names = z.namelist()
        top = {n.split("/")[0] for n in names}
        info, = [t for t in top if t.endswith(".dist-info")]
        entry_points = z.read(info + "/entry_points.txt").decode()
        for module in bricks.core_modules():
            with open(os.path.join(dists["src"], "shared", module + ".py"), "rb") as f:
                assert z.read(module + ".py") == f.read(), module
    stubs = sorted(n for n in os.listdir(os.path.join(dists["src"], "stubs")) if n.endswith("-stubs"))
    assert sorted(top - {info}) == sorted([m + ".py" for m in bricks.core_modules()] + stubs
                                          + ["miniboard", "minitools"])
    for stub in stubs:
        assert stub + "/__init__.pyi" in names
    assert "mini = minitools.cli:main" in entry_points
    assert "mini-board = miniboard.board:main" in entry_points
