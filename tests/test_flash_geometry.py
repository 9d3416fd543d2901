# Issue 13.4: the flash geometry of the boards is defined once, in
# boards/virtual/flashgeometry.py. flashfile.py (MicroPython), board.py and
# `mini image extract` import it; tests/mp/blockdev.py keeps a literal copy (it is
# imported on MicroPython from many scripts, each with its own sys.path), checked
# here. Also: the split virtual board imports as the installed package (mini-board)
# as well as as a script.
import ast
import os
import subprocess
import sys

from miniboard import flashgeometry
from minitools import image

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")


def literal(path, name):
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("%s: no %s = ..." % (path, name))


def test_blockdev_copy_equals_the_one_definition():
    assert literal(os.path.join(TOP, "tests", "mp", "blockdev.py"), "GEOMETRY") == flashgeometry.GEOMETRY
    assert set(flashgeometry.BOARDS) == set(flashgeometry.GEOMETRY)


def test_the_host_tools_derive_from_it():
    assert image.PROG_SIZE == {board: prog for board, (_, prog) in flashgeometry.GEOMETRY.items()}
    assert image.BLOCK_SIZE == flashgeometry.BLOCK_SIZE


def test_flashfile_on_micropython_uses_it():
    code = ("import sys\nsys.path.insert(0, %r)\nimport flashfile, flashgeometry\n"
            "print(flashfile.GEOMETRY is flashgeometry.GEOMETRY, sorted(flashfile.GEOMETRY.items()))\n"
            % os.path.join(TOP, "boards", "virtual"))
    out = subprocess.run([MICROPYTHON, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=30).stdout.decode()
    assert out.strip() == "True " + repr(sorted(flashgeometry.GEOMETRY.items())), out


def test_flashfile_programs_like_nor_flash(tmp_path):
    """A program ANDs into what is there (it only clears bits); an erase sets a block to
    0xFF; the simple interface (whole blocks) erases, then programs."""
    image_path = str(tmp_path / "nor.bin")
    code = """
import sys
sys.path.insert(0, %r)
import flashfile
f = flashfile.FlashFile.create(%r, 4)
def read(block, offset, n):
    buf = bytearray(n)
    f.readblocks(block, buf, offset)
    return bytes(buf)
f.writeblocks(1, b"\\xf0\\x0f\\xaa\\xff", 100)
print(read(1, 100, 4).hex())
f.writeblocks(1, b"\\x3c\\xff\\x55\\x00", 100)  # over bytes already programmed
print(read(1, 100, 4).hex(), read(1, 96, 4).hex(), read(1, 104, 4).hex())
f.writeblocks(1, b"\\xff" * 8, 98)  # 0xFF over written bytes leaves them as they are
print(read(1, 100, 4).hex())
f.ioctl(6, 1)
print(read(1, 100, 4).hex(), f.erases)
f.writeblocks(1, b"\\x12\\x34", 100)
print(read(1, 100, 2).hex())
f.writeblocks(2, b"\\x00" * 4096)
f.writeblocks(2, b"\\x5a" * 4096)  # simple interface: an erase first
print(read(2, 0, 2).hex(), read(2, 4094, 2).hex(), f.erases)
f.close()
""" % (os.path.join(TOP, "boards", "virtual"), image_path)
    out = subprocess.run([MICROPYTHON, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=30).stdout.decode()
    assert out.split() == ["f00faaff", "300f0000", "ffffffff", "ffffffff", "300f0000", "ffffffff", "1",
                           "1234", "5a5a", "5a5a", "3"], out
    with open(image_path, "rb") as f:
        data = f.read()
    assert data[4096 + 100:4096 + 102] == b"\x12\x34" and data[3 * 4096:] == b"\xff" * 4096


def test_the_board_command_runs_as_a_package_and_as_a_script(tmp_path):
    image_path = str(tmp_path / "none.bin")
    for cmd in ([sys.executable, "-c", "import sys; from miniboard import board; sys.exit(board.main(sys.argv[1:]))"],
                [sys.executable, os.path.join(TOP, "boards", "virtual", "board.py")]):
        proc = subprocess.run(cmd + ["status", "--image", image_path], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30, cwd=str(tmp_path))
        assert proc.returncode == 3 and proc.stdout.decode().strip() == "off", proc.stderr.decode()
