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


def test_the_board_command_runs_as_a_package_and_as_a_script(tmp_path):
    image_path = str(tmp_path / "none.bin")
    for cmd in ([sys.executable, "-c", "import sys; from miniboard import board; sys.exit(board.main(sys.argv[1:]))"],
                [sys.executable, os.path.join(TOP, "boards", "virtual", "board.py")]):
        proc = subprocess.run(cmd + ["status", "--image", image_path], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30, cwd=str(tmp_path))
        assert proc.returncode == 3 and proc.stdout.decode().strip() == "off", proc.stderr.decode()
