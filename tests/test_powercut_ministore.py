# Power-cut test of ministore on simulated flash, on the MicroPython unix port:
# the power fails at every program/erase op of an append workload, in every
# mode of tests/mp/blockdev.py, and a copy of the image must mount, open and hold every acknowledged
# record and nothing but whole attempted records (tests/mp/powercut_ministore.py).
import pytest

from mpdriver import run_and_record

CONFIGS = [
    ("lfs2-esp32", "always"), ("lfs2-esp32", "4"),
    ("lfs2-rp2040", "always"), ("lfs2-rp2040", "4"),
    ("fat-esp32", "always"), ("fat-esp32", "4"),
]


@pytest.mark.parametrize("fs,sync", CONFIGS, ids=["%s-sync_%s" % c for c in CONFIGS])
def test_powercut_ministore(fs, sync):
    run_and_record(["tests/mp/powercut_ministore.py", fs, sync])
