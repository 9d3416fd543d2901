# Power-cut test of ministate + minisnap on simulated flash, on the MicroPython unix
# port: the power fails at every program/erase op of a StateManager workload (apply,
# apply_many, explicit and automatic snapshots with compaction, close and reopen), in
# every mode of tests/mp/blockdev.py (raise, torn, drop, reorder), and a copy of the image must mount and open to the model state after
# a prefix of the attempted mutations that holds every acknowledged one
# (tests/mp/powercut_ministate.py, on the sweep in tests/mp/powercut.py).
import pytest

from mpdriver import run_and_record

CONFIGS = [
    ("lfs2-esp32", "always"), ("lfs2-esp32", "4"),
    ("lfs2-rp2040", "always"), ("lfs2-rp2040", "4"),
    ("fat-esp32", "always"), ("fat-esp32", "4"),
]


@pytest.mark.parametrize("fs,sync", CONFIGS, ids=["%s-sync_%s" % c for c in CONFIGS])
def test_powercut_ministate(fs, sync):
    run_and_record(["tests/mp/powercut_ministate.py", fs, sync])
