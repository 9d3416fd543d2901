# Power-cut test of miniqueue on simulated flash, on the MicroPython unix port: the
# power fails at every program/erase op of a queue workload (put, put_many, get, ack,
# nack, a dead letter, drop_oldest drops, automatic compactions, close and reopen),
# in every mode of tests/mp/blockdev.py, and a copy of the image must mount and open to the queue after a
# prefix of the attempted events that holds every acknowledged one; draining it must
# lose no acknowledged put, deliver no message whose ack was acknowledged, and keep
# the id order (tests/mp/powercut_miniqueue.py, on the sweep in tests/mp/powercut.py).
import pytest

from mpdriver import run_and_record

CONFIGS = [
    ("lfs2-esp32", "always"), ("lfs2-esp32", "4"),
    ("lfs2-rp2040", "always"), ("lfs2-rp2040", "4"),
    ("fat-esp32", "always"), ("fat-esp32", "4"),
]


@pytest.mark.parametrize("fs,sync", CONFIGS, ids=["%s-sync_%s" % c for c in CONFIGS])
def test_powercut_miniqueue(fs, sync):
    run_and_record(["tests/mp/powercut_miniqueue.py", fs, sync])
