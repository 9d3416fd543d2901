# A miniflash journal region (FORMAT.md 6) read out of raw flash dumps by the `mini`
# command (a real subprocess: `mini cat --offset`, `mini image extract --region`), and
# a board whose flash is split between LittleFS and a region, on the real MicroPython
# unix port over a flash image, killed with SIGKILL (a power cut) again and again.
import json
import os
import random
import signal
import subprocess
import sys

from mpdriver import micropython_path
from test_cli import mini, TOP

sys.path.insert(0, os.path.join(TOP, "tests", "mp"))
import blockdev  # noqa: E402
import miniflash  # noqa: E402
from ministore import MiniStore  # noqa: E402

SECTOR = 4096


def make_dump(path, records=600, torn=True):
    """16 sectors: other data in sectors 0-3 and 12-15, a region in sectors 4-11 that has gone round its ring."""
    flash = blockdev.RAMFlash(SECTOR, 16)
    flash.data[:4 * SECTOR] = b"\x00" * (4 * SECTOR)
    flash.data[12 * SECTOR:] = (b"other" * SECTOR)[:4 * SECTOR]
    region = miniflash.Region(flash, start=4, sectors=8, retain=8000)
    with MiniStore.open(region) as store:
        for i in range(records):
            store.append({"i": i + 1, "s": "caf\u00e9", "fill": "x" * 60})
        store.append_many([{"batch": 1}, {"batch": 2}])
    if torn:  # a program that a power cut stopped halfway
        head = 4 + miniflash.FlashReader(region).ring[-1][0]
        end = head * SECTOR + len(bytes(flash.data[head * SECTOR:(head + 1) * SECTOR]).rstrip(b"\xff"))
        torn_bytes = b'{"seq":%d,"rec":{"i":"torn"' % (records + 3)
        flash.data[end:end + len(torn_bytes)] = torn_bytes
    with open(path, "wb") as f:
        f.write(flash.data)
    return records + 2


def test_cat_and_extract_read_a_region_out_of_a_dump(tmp_path):
    dump = tmp_path / "flash.bin"
    last = make_dump(dump)
    code, out, err = mini("cat", dump, "--offset", "0x4000")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    seqs = [line["seq"] for line in lines]
    assert seqs == list(range(seqs[0], last + 1)) and seqs[0] > 1  # the oldest records went by retention
    assert lines[-1]["rec"] == {"batch": 2} and lines[0]["rec"]["s"] == "caf\u00e9"
    assert "torn tail skipped" in err
    code, out2, _ = mini("cat", dump, "--offset", "16384", "--size", "0x8000", "--raw", "--from-seq", last - 1)
    assert code == 0 and [json.loads(x) for x in out2.splitlines()] == [{"batch": 1}, {"batch": 2}]

    code, out, err = mini("image", "extract", dump, "--region", "--offset", "0x4000", tmp_path / "out")
    assert code == 0, err
    assert "last seq %d" % last in out and "torn tail" in out
    journal = tmp_path / "out" / "journal.jsonl"
    code, out, err = mini("verify", journal)
    assert code == 0 and "OK" in out, out + err
    code, out3, _ = mini("cat", journal)
    assert out3 == out_cat(dump)
    sectors = json.loads((tmp_path / "out" / "sectors.json").read_text())
    assert sectors["sectors"] == 8 and len(sectors["in_use"]) >= 2
    assert (tmp_path / "out" / "region.bin").stat().st_size == 8 * SECTOR
    code, _, err = mini("image", "extract", dump, "--region", "--offset", "0x4000", tmp_path / "out")
    assert code == 2 and "not empty" in err


def out_cat(dump):
    return mini("cat", dump, "--offset", "0x4000")[1]


def test_region_errors_are_one_line(tmp_path):
    dump = tmp_path / "flash.bin"
    make_dump(dump, records=20, torn=False)
    code, _, err = mini("cat", tmp_path / "none.bin", "--offset", "0")
    assert code == 2 and "no such file" in err
    code, _, err = mini("cat", dump, "--offset", "100")
    assert code == 2 and "not a multiple" in err
    code, _, err = mini("cat", dump, "--offset", "0xc000")
    assert code == 2 and "no miniflash sector header" in err
    code, _, err = mini("cat", dump, "--offset", "0x4000", "--size", "0x7000")  # the region is 8 sectors
    assert code == 2 and "written for 8 sectors" in err
    code, _, err = mini("cat", dump, "--offset", "0xe000", "--size", "0x8000")
    assert code == 2 and "dump ends" in err
    code, _, err = mini("image", "extract", dump, tmp_path / "out")
    assert code == 2 and "--board is required" in err


def test_split_flash_on_the_unix_port_survives_sigkill(tmp_path):
    image = tmp_path / "flash.bin"
    image.write_bytes(b"\xff" * (SECTOR * 64))
    rng = random.Random(18)
    acked = 0
    app = [micropython_path(), os.path.join(TOP, "tests", "mp", "flash_region_app.py"), str(image), "16"]
    for round_no in range(5):
        proc = subprocess.Popen(app + ["100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        target = acked + rng.randrange(20, 300)
        try:
            for line in proc.stdout:
                word, seq = line.split()
                if word == b"open":
                    assert int(seq) >= acked  # nothing acknowledged is gone
                else:
                    acked = int(seq)
                    if acked >= target:
                        break
        finally:
            proc.send_signal(signal.SIGKILL)  # the power goes, mid-append more often than not
            proc.wait()
        code, out, err = mini("cat", image, "--offset", "0x10000", "--raw")
        assert code == 0, err
        numbers = [json.loads(line)["n"] for line in out.splitlines()]
        assert numbers == list(range(numbers[0], numbers[-1] + 1)) and numbers[-1] >= acked
    done = subprocess.run(app + ["10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith(b"done"), done.stderr
    code, out, err = mini("image", "extract", image, "--board", "rp2040", "--block-count", "16", tmp_path / "fs")
    assert code == 0 and (tmp_path / "fs" / "last.txt").exists(), err


MAKE_REGION = """
import blockdev, miniflash
from ministore import MiniStore
F = blockdev.RAMFlash(4096, 8)
with MiniStore.open(miniflash.Region(F, retain=8000)) as s:
    for i in range(400):
        s.append({'i': i, 'fill': 'x' * 60})
print('made', s.seq)
"""


def test_image_pull_reads_a_region_off_the_virtual_board(tmp_path):
    from test_virtual_board import VirtualBoard, mpremote
    board = VirtualBoard(tmp_path / "flash.bin", "esp32")
    address = board.start("--size-kb", "256")
    try:
        files = [os.path.join("shared", name) for name in ("minishim.py", "minidamage.py", "miniformat.py",
                                                           "minireader.py", "ministore.py", "miniregion.py",
                                                           "miniflash.py")]
        mpremote(address, "fs", "mkdir", ":lib", "+", "fs", "cp", *files, "tests/mp/blockdev.py", ":lib/")
        assert "made 400" in mpremote(address, "exec", MAKE_REGION)
        out = tmp_path / "region.bin"
        code, text, err = mini("image", "pull", "--port", address, "--device", "F", out)
        assert code == 0 and "pulled 8 blocks of 4096 bytes" in text, err
        code, text, err = mini("cat", out, "--offset", "0", "--raw")
        assert code == 0, err
        numbers = [json.loads(line)["i"] for line in text.splitlines()]
        assert numbers == list(range(numbers[0], 400)) and numbers[0] > 0
        code, _, err = mini("image", "pull", "--port", address, "--device", "nothing_here", out)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "nothing_here" in err, err
    finally:
        board.stop(power_cut=True)
