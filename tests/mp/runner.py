# Runs the core test modules (tests/core/test_*.py) on the MicroPython unix port.
#   micropython -X heapsize=32M tests/mp/runner.py FS [test_module ...] [-k substring] [--core DIR]
#                                                   [--xfail test_name ...]
# FS is "posix" (a temp dir on the host), or "lfs2-esp32", "lfs2-rp2040",
# "fat-esp32", "fat-rp2040": a filesystem on a RAM block device with that
# board's geometry, mounted at /flash. --core DIR imports the bricks from DIR
# instead of shared/ (for example a directory of .mpy files only). --xfail NAME
# (repeatable) expects test NAME to fail, strictly: its failure is counted as
# "xfailed", and its passing as a failure (the caller says why it should fail).
# Ends with the line "N passed, N failed".
import sys
import os

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
TOP = HERE + "/../.."
CORE = TOP + "/shared"
if "--core" in sys.argv:
    at = sys.argv.index("--core")
    CORE = sys.argv[at + 1]
    del sys.argv[at:at + 2]
sys.path.insert(0, CORE)
sys.path.insert(0, TOP + "/tests/core")
sys.path.insert(0, HERE)

import support  # noqa: E402


def setup_fs(name):
    if name == "posix":
        root = "/tmp/mini-mp-%d" % (int.from_bytes(os.urandom(4), "little"))
        os.mkdir(root)
        return root
    import vfs
    import blockdev
    kind, geometry = name.split("-")
    # The whole suite, no cleanup between tests: 8 MiB on the unix port (4 MiB was at the
    # edge: test_threads ran out of space late in the suite); an emulated board boots
    # afresh for each module (tests/test_mcu.py), and 4 MiB of its RAM is enough there.
    blocks = 2048 if sys.platform == "linux" else 1024
    flash, fs = blockdev.make_fs(kind, geometry, blocks=blocks)
    vfs.mount(fs, "/flash")
    return "/flash"


class OpenFiles:
    """Files opened under /flash (the unix port only: a board's heap is kept for the
    test). A file left open when a test ends fails it: on MicroPython nothing closes an
    abandoned generator's file, and the collector's finaliser that closes it later may
    run inside another LittleFS call, reentering it from our Python block device (a
    segfault of the unix port, 1 run in about 40, before the core closed every reader)."""

    def __init__(self):
        self.files = []
        try:
            import builtins
            self._open = builtins.open
            builtins.open = self.open
        except (ImportError, AttributeError, TypeError):  # builtins not overridable here
            self._open = None

    def open(self, path, *args):
        f = self._open(path, *args)
        if str(path).startswith("/flash"):
            self.files.append((f, path))
        return f

    def left_open(self):
        """Paths of the files opened since the last call that are still open (closed now)."""
        left = []
        for f, path in self.files:
            try:
                f.flush()  # raises once closed: ValueError on LittleFS, OSError on FAT
            except (ValueError, OSError):
                continue
            left.append(path)
            f.close()
        self.files = []
        return left


def print_exc(exc):
    try:
        sys.print_exception(exc)
    except AttributeError:
        import traceback
        traceback.print_exception(exc)


def main(argv):
    fs = argv[1]
    names = []
    pattern = None
    expected = []
    edge = []  # --heap-edge NAME: may fail with MemoryError on this heap, may pass (counted apart)
    i = 2
    while i < len(argv):
        if argv[i] == "--xfail":
            expected.append(argv[i + 1])
            i += 2
            continue
        if argv[i] == "--heap-edge":
            edge.append(argv[i + 1])
            i += 2
            continue
        if argv[i] == "--memory-errors-ok":  # every test is at the heap's edge (a small board)
            edge.append("*")
            i += 1
            continue
        if argv[i] == "-k":
            pattern = argv[i + 1]
            i += 2
            continue
        names.append(argv[i].rsplit("/", 1)[-1].replace(".py", ""))
        i += 1
    if not names:
        names = sorted(n[:-3] for n in os.listdir(TOP + "/tests/core") if n.startswith("test_") and n.endswith(".py"))
    import minishim
    print("core from", minishim.__file__)
    support.ROOT = setup_fs(fs)
    support.FS = fs
    passed = failed = xfailed = 0
    opened = OpenFiles() if sys.platform == "linux" and fs != "posix" else None
    for name in names:
        module = __import__(name)
        tests = sorted(k for k in dir(module) if k.startswith("test_"))
        for test in tests:
            if pattern and pattern not in test:
                continue
            try:
                getattr(module, test)()
                left = opened.left_open() if opened is not None else []
                if left:
                    raise AssertionError("left open: %s" % ", ".join(left))
            except Exception as exc:
                if opened is not None:
                    opened.left_open()  # closed, and not blamed on the next test
                if (test in edge or "*" in edge) and isinstance(exc, MemoryError):
                    xfailed += 1
                    print("xfail %s.%s [%s]: at the heap's edge: %r" % (name, test, fs, exc))
                    if hasattr(sys, "print_exception"):  # where: the open work of issue 14
                        sys.print_exception(exc)
                    continue
                if test in expected:
                    xfailed += 1
                    print("xfail %s.%s [%s]: %r" % (name, test, fs, exc))
                    continue
                failed += 1
                print("FAIL %s.%s [%s]" % (name, test, fs))
                print_exc(exc)
            else:
                if test in expected:
                    failed += 1
                    print("FAIL %s.%s [%s]: passed, but --xfail expected a failure" % (name, test, fs))
                    continue
                passed += 1
                print("ok   %s.%s" % (name, test))
    if expected or edge:
        print("%d xfailed" % xfailed)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


sys.exit(main(sys.argv))
