# `mini image extract` of a damaged LittleFS dump: every file that can be read is
# extracted; each file or directory that cannot is named on stderr with the reason,
# the rest goes on, and the exit is 1 (0 when nothing was skipped). An image that
# cannot be mounted at all: one line, exit 2. From a review: one unreadable file
# (LittleFSError from read) ended the whole command in a traceback with nothing
# extracted, and the command exists to get logs off a board that no longer boots.
# Images written by littlefs-python and by the virtual board, damaged by hand.
# A file that can be read only in part (some blocks of a damaged skip-list still
# reachable) was skipped whole; now what can be read goes to NAME.partial, never under
# the file's own name, the unreadable bytes as zeros, and stderr names the file as
# partial with the byte ranges that could not be read (exit 1, as for a skipped file).
import os
import re
import struct

import pytest

from ministore import MiniStore

from crafted_image import BLOCK, PROG, _crc0, mount
from miniboard.flashgeometry import GEOMETRY
from test_virtual_board import TOP, BRICKS, VirtualBoard, mini, mpremote

BLOCKS = 32
BIG = b"B" * (5 * BLOCK)


def break_pointers(image, fill):
    """Damage every block of a multi-block file (bytes `fill`) but its first: its CTZ skip-list
    pointers, the first words of the block, then point past the end of the flash."""
    damaged = 0
    for at in range(0, len(image), BLOCK):
        block = image[at:at + BLOCK]
        if block.count(fill) > BLOCK // 4 and block[:4] != fill * 4:
            image[at:at + 8] = struct.pack("<II", 0x100000, 0x100000)
            damaged += 1
    assert damaged, "no block of the file found"


def break_directory(image, name, blocks):
    """Point the directory entry `name` (bytes) at the root to a metadata pair past the
    end of the flash, and fix its commit's CRC (linear, see crafted_image.py): the image
    mounts and lists `name`, but the directory itself cannot be listed."""
    from littlefs import LittleFSError
    assert image.count(name) == 1
    pair_at = image.index(name) + len(name) + 4  # after the name: a 4-byte tag, then the pair
    new = struct.pack("<II", 0x7000, 0x7001)
    diff = bytes(a ^ b for a, b in zip(image[pair_at:pair_at + 8], new))
    for slot in range(pair_at + 8, (pair_at // BLOCK + 1) * BLOCK - 3):
        trial = bytearray(image)
        trial[pair_at:pair_at + 8] = new
        value = struct.unpack_from("<I", trial, slot)[0]
        struct.pack_into("<I", trial, slot, value ^ _crc0(diff + bytes(slot - pair_at - 8)))
        try:
            fs = mount(trial, blocks)
            if name.decode() not in [e.name for e in fs.scandir("/")]:
                continue  # not the CRC's slot: littlefs fell back to an older commit
        except LittleFSError:
            continue
        try:
            list(fs.scandir("/" + name.decode()))
        except LittleFSError:
            return trial
    raise AssertionError("could not break the directory %r" % name)


def damaged_image():
    from littlefs import LittleFS
    fs = LittleFS(block_size=BLOCK, block_count=BLOCKS, read_size=PROG, prog_size=PROG, lookahead_size=32)
    fs.makedirs("/logs", exist_ok=True)
    with fs.open("/logs/good.txt", "wb") as f:
        f.write(b"hello flash")
    with fs.open("/logs/big.jsonl", "wb") as f:
        f.write(BIG)
    fs.makedirs("/lost", exist_ok=True)
    with fs.open("/lost/inner.txt", "wb") as f:
        f.write(b"inner")
    with fs.open("/top.txt", "wb") as f:
        f.write(b"T" * 3000)
    image = bytearray(fs.context.buffer)
    break_pointers(image, b"B")
    return bytes(break_directory(image, b"lost", BLOCKS))


def skipped_lines(err):
    lines = [line for line in err.strip().splitlines() if not line.startswith("mini image extract: partial /")]
    assert all(line.startswith("mini image extract: skipped /") for line in lines), err
    return lines


def partial_holes(err, name):
    """The byte ranges [begin, stop) that stderr says `name` lost (its one "partial" line)."""
    lines = [line for line in err.splitlines() if line.startswith("mini image extract: partial %s: " % name)]
    assert len(lines) == 1, err
    assert "LFS_ERR_CORRUPT" in lines[0] and name.lstrip("/") + ".partial" in lines[0], err
    ranges = re.search(r"\(bytes ([0-9., ]+):", lines[0]).group(1).split(", ")
    return [(int(a), int(b) + 1) for a, b in (r.split("..") for r in ranges)]


def check_partial(fs, name, original, partial, holes):
    """partial is original but for the holes, which are zeros, and which littlefs cannot read
    (their first and last byte), while the bytes on each side of them it can."""
    from littlefs import LittleFSError
    assert len(partial) == len(original) and holes
    at = 0
    for begin, stop in holes:
        assert partial[at:begin] == original[at:begin]
        assert partial[begin:stop] == bytes(stop - begin)
        for inside in (begin, stop - 1):
            with pytest.raises(LittleFSError):
                with fs.open(name, "rb", buffering=0) as f:  # a buffered read reads ahead
                    f.seek(inside)
                    f.read(1)
        for outside in (begin - 1, stop):
            if 0 <= outside < len(original):
                with fs.open(name, "rb", buffering=0) as f:
                    f.seek(outside)
                    assert f.read(1) == original[outside:outside + 1]
        at = stop
    assert partial[at:] == original[at:]


def test_what_can_be_read_is_extracted_and_the_rest_named(tmp_path):
    image = tmp_path / "damaged.bin"
    image.write_bytes(damaged_image())
    out_dir = tmp_path / "out"
    code, out, err = mini("image", "extract", image, "--board", "esp32", out_dir)
    assert code == 1, out + err
    assert (out_dir / "logs" / "good.txt").read_bytes() == b"hello flash"
    assert (out_dir / "top.txt").read_bytes() == b"T" * 3000
    assert not (out_dir / "logs" / "big.jsonl").exists()  # never a file that is not what the image held
    lines = skipped_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("mini image extract: skipped /lost: cannot be listed") and "LFS_ERR_CORRUPT" in lines[0]
    # its first block and its last (the file's head) are still reachable
    holes = partial_holes(err, "/logs/big.jsonl")
    # blocks 1..3 hold 4092 + 4088 + 4092 bytes (after 1, 2 and 1 pointers of 4 bytes)
    assert holes == [(BLOCK, BLOCK + 4092 + 4088 + 4092)], holes
    check_partial(mount(image.read_bytes(), BLOCKS), "/logs/big.jsonl", BIG,
                  (out_dir / "logs" / "big.jsonl.partial").read_bytes(), holes)
    assert "extracted 2 files" in out and "1 files or directories could not be extracted" in out
    assert "1 files could be read only in part" in out


def test_a_journal_readable_in_part_keeps_its_readable_records(tmp_path):
    """One block in the middle of a 6-block journal has its pointers damaged: the blocks
    before and after it are still reachable, and their records are in the .partial file."""
    from littlefs import LittleFS
    fs = LittleFS(block_size=BLOCK, block_count=BLOCKS, read_size=PROG, prog_size=PROG, lookahead_size=32)
    lines = [b'{"seq":%d,"rec":{"i":%d},"crc":"00000000"}\n' % (i, i) for i in range(1, 700)]
    original = b"".join(lines)[:6 * BLOCK - 200]
    fs.makedirs("/logs", exist_ok=True)
    with fs.open("/logs/j.jsonl", "wb") as f:
        f.write(original)
    image = bytearray(fs.context.buffer)
    third = [at for at in range(0, len(image), BLOCK) if original[2 * BLOCK:2 * BLOCK + 64] in image[at:at + BLOCK]]
    assert len(third) == 1
    image[third[0]:third[0] + 8] = struct.pack("<II", 0x100000, 0x100000)  # block 2 of the file: its 2 pointers
    path = tmp_path / "damaged.bin"
    path.write_bytes(bytes(image))
    out_dir = tmp_path / "out"
    code, out, err = mini("image", "extract", path, "--board", "esp32", out_dir)
    assert code == 1, out + err
    assert skipped_lines(err) == [], err
    assert not (out_dir / "logs" / "j.jsonl").exists()
    holes = partial_holes(err, "/logs/j.jsonl")
    partial = (out_dir / "logs" / "j.jsonl.partial").read_bytes()
    check_partial(mount(bytes(image), BLOCKS), "/logs/j.jsonl", original, partial, holes)
    assert sum(stop - begin for begin, stop in holes) < 2 * BLOCK  # one block lost, not the file
    assert partial.endswith(original[-3 * BLOCK:])
    assert "extracted 0 files" in out and "1 files could be read only in part" in out


def test_force_keeps_the_old_copy_of_a_file_that_cannot_be_read(tmp_path):
    image = tmp_path / "damaged.bin"
    image.write_bytes(damaged_image())
    out_dir = tmp_path / "out"
    (out_dir / "logs").mkdir(parents=True)
    (out_dir / "logs" / "big.jsonl").write_bytes(b"an older copy")
    code, _, err = mini("image", "extract", image, "--board", "esp32", out_dir, "--force")
    assert code == 1, err
    assert (out_dir / "logs" / "big.jsonl").read_bytes() == b"an older copy"
    assert (out_dir / "logs" / "good.txt").read_bytes() == b"hello flash"


def test_nothing_is_written_through_a_symlink_inside_out_dir(tmp_path):
    from littlefs import LittleFS
    fs = LittleFS(block_size=BLOCK, block_count=16, read_size=PROG, prog_size=PROG, lookahead_size=32)
    fs.makedirs("/logs", exist_ok=True)
    for name, data in (("/logs/good.txt", b"a good file"), ("/top.txt", b"top")):
        with fs.open(name, "wb") as f:
            f.write(data)
    image = tmp_path / "good.bin"
    image.write_bytes(bytes(fs.context.buffer))  # undamaged
    out_dir = tmp_path / "out"
    (out_dir / "logs").mkdir(parents=True)
    victim = out_dir / "victim.txt"
    victim.write_text("keep me")
    os.symlink(str(victim), str(out_dir / "logs" / "good.txt"))  # resolves inside OUT_DIR: not an escape
    code, out, err = mini("image", "extract", image, "--board", "esp32", out_dir, "--force")
    assert code == 1, out + err
    assert victim.read_text() == "keep me" and os.path.islink(str(out_dir / "logs" / "good.txt"))
    lines = skipped_lines(err)
    assert len(lines) == 1 and "/logs/good.txt" in lines[0] and "symlink" in lines[0], err
    assert (out_dir / "top.txt").read_bytes() == b"top"

    os.unlink(str(out_dir / "logs" / "good.txt"))  # now the directory on the way is the symlink
    os.rmdir(str(out_dir / "logs"))
    (out_dir / "elsewhere").mkdir()
    os.symlink(str(out_dir / "elsewhere"), str(out_dir / "logs"))
    code, out, err = mini("image", "extract", image, "--board", "esp32", out_dir, "--force")
    assert code == 1, out + err
    assert os.listdir(str(out_dir / "elsewhere")) == [] and "symlink" in err


def test_an_image_that_cannot_be_mounted_is_one_line_exit_2(tmp_path):
    from littlefs import LittleFS
    fs = LittleFS(block_size=BLOCK, block_count=16, read_size=PROG, prog_size=PROG, lookahead_size=32)
    fs.makedirs("/logs", exist_ok=True)
    with fs.open("/logs/a.txt", "wb") as f:
        f.write(b"x")
    image = bytearray(fs.context.buffer)
    at = image.index(b"a.txt") // BLOCK * BLOCK  # the metadata of /logs: mounting walks every directory's
    image[at:at + BLOCK] = b"\x55" * BLOCK
    path = tmp_path / "broken.bin"
    path.write_bytes(bytes(image))
    code, out, err = mini("image", "extract", path, "--board", "esp32", tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no LittleFS" in err, err
    assert out == "" and not (tmp_path / "out").exists()


BIG_JOURNAL = """
import os
from ministore import MiniStore
os.mkdir('/logs')
with MiniStore.open('/logs/journal.jsonl') as s:
    for i in range(30):
        s.append({'i': i})
with open('/logs/big.bin', 'wb') as f:
    for i in range(6):
        f.write(b'Z' * 4096)
print('made')
"""


@pytest.mark.parametrize("geometry", ["esp32", "rp2040"])
def test_the_logs_of_a_damaged_board_flash_are_recovered(tmp_path, geometry):
    board = VirtualBoard(tmp_path / "flash.bin", geometry)
    address = board.start("--preload", "--size-kb", "512")
    try:
        assert "made" in mpremote(address, "exec", BIG_JOURNAL)
    finally:
        board.stop(power_cut=True)
    with open(board.image, "rb") as f:
        image = bytearray(f.read())
    break_pointers(image, b"Z")
    damaged = tmp_path / "damaged.bin"
    damaged.write_bytes(bytes(image))
    out_dir = tmp_path / "out"
    code, out, err = mini("image", "extract", damaged, "--board", geometry, out_dir)
    assert code == 1, out + err
    assert skipped_lines(err) == [], err
    holes = partial_holes(err, "/logs/big.bin")
    # its last block (the head, 4084 bytes from 20452) has one pointer: break_pointers' second
    # word is its first 4 data bytes, which read back as written (LittleFS keeps no checksum of data)
    held = b"Z" * 20452 + struct.pack("<I", 0x100000) + b"Z" * (6 * 4096 - 20456)
    check_partial(mount(bytes(image), len(image) // BLOCK, GEOMETRY[geometry][1]), "/logs/big.bin", held,
                  (out_dir / "logs" / "big.bin.partial").read_bytes(), holes)
    assert not (out_dir / "logs" / "big.bin").exists()
    assert MiniStore.replay(str(out_dir / "logs" / "journal.jsonl")) == [{"i": i} for i in range(30)]
    for name in BRICKS:
        with open(os.path.join(TOP, "shared", name), "rb") as a, open(out_dir / "lib" / name, "rb") as b:
            assert a.read() == b.read()


def test_image_extract_without_littlefs_python_says_how_to_install_it(tmp_path):
    # littlefs-python comes with the "device" extra only: after a plain `pip install .`
    # the command ended in a ModuleNotFoundError traceback.
    import subprocess
    import sys
    image = tmp_path / "flash.bin"
    image.write_bytes(b"\xff" * 4096)
    code = ("import sys; sys.modules['littlefs'] = None; from minitools.cli import main; "
            "sys.exit(main(['image', 'extract', %r, '--board', 'esp32', %r]))" % (str(image), str(tmp_path / "out")))
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(top, "shared"), os.path.join(top, "cpython")]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "littlefs-python" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()
