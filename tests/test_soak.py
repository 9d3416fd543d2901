# The bricks together on one flash, on the MicroPython unix port (tests/mp/soak.py,
# workload in tests/mp/soak_workload.py): a StateManager, a MiniQueue outbox and a
# plain ministore journal in three directories of one filesystem, as the sensor
# logger uses them, checked against reference models.
#   soak:  seeded random workloads of SOAK_OPS ops, each with power cuts at random
#          flash ops in random modes; after each cut a copy of the flash is
#          remounted, recovered, checked and the workload goes on; then an uncut
#          finish with a full drain of the queue;
#   sweep: a short workload that reaches every brick's write paths, cut at every
#          program/erase op in every mode;
#   wear:  erases per block after an uncut soak (LittleFS must stay level; FAT is
#          only reported).
# Sizes follow MINI_TORTURE (tests/reliability.py): "ci" (default) or "long".
# Every RESULT line goes to reliability.record() before anything is asserted, so a
# failure is on record too.
import pytest

import reliability
from mpdriver import run_micropython

FILESYSTEMS = ["lfs2-esp32", "lfs2-rp2040", "fat-esp32"]
SOAK_SEEDS = reliability.pick(ci=80, long=800)
SOAK_OPS = 2000
SOAK_CUTS = 3
SWEEP_SEEDS = reliability.pick(ci="141", long="54,55,61,67,76,84,103,115,141,148")
# 20,000 ops: at 5,000 the rp2040's max/mean was the metadata pair's erases before
# LittleFS moves it, over a mean that any saving of erases lowers (tests/mp/soak.py).
WEAR_OPS = reliability.pick(ci=20000, long=50000)
TIMEOUT = reliability.pick(ci=900, long=4 * 3600)


def run_soak_script(args):
    code, out = run_micropython(["tests/mp/soak.py"] + args, timeout=TIMEOUT)
    results = reliability.parse_result_lines(out)
    for result in results:
        reliability.record(**result)
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if code != 0 or not last.endswith(" 0 failed") or last.startswith("0 passed"):
        pytest.fail("micropython tests/mp/soak.py %s exited %d:\n%s" % (" ".join(args), code, out[-20000:]))
    assert results, "no RESULT line:\n" + out[-5000:]
    for result in results:
        assert result["acked_lost"] == 0 and result["violations"] == 0, result
    for line in out.strip().splitlines()[-4:]:
        print(line)
    return results


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_soak(fs):
    results = run_soak_script(["soak", fs, "--seeds", "0:%d" % SOAK_SEEDS, "--ops", str(SOAK_OPS),
                               "--cuts", str(SOAK_CUTS)])
    assert results[0]["seeds"] == SOAK_SEEDS and results[0]["cut_points"] > 0


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_sweep(fs):
    results = run_soak_script(["sweep", fs, "--seed", SWEEP_SEEDS])
    assert results[0]["checks"] > 0


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_wear(fs):
    results = run_soak_script(["wear", fs, "--ops", str(WEAR_OPS)])
    wear = results[0]["wear"]
    assert wear["blocks"] > 0 and wear["mean"] > 0, wear
