# The core test suite (tests/core) again, on the real MicroPython unix port, on
# each filesystem a board can have. pytest runs the same modules on CPython.
import pytest

from mpdriver import assert_all_passed

FILESYSTEMS = ["posix", "lfs2-esp32", "lfs2-rp2040", "fat-esp32", "fat-rp2040"]


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_core_suite_on_micropython(fs):
    out = assert_all_passed(["tests/mp/runner.py", fs])
    print(out.strip().splitlines()[-1])
