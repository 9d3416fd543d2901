# The virtual board's "firmware": what a real board does at reset, before its REPL.
# board.py runs it as  micropython -i vboot.py IMAGE BOARD MODE SYNC READY (MicroPython only):
#   1. mount the LittleFS flash image at / in place of the host's filesystem
#      (mkfs if the image is blank; a non-blank image that does not mount is left
#      alone and the board comes up without a filesystem, like a broken board);
#   2. sys.path = ['', '.frozen', '/lib'], sys.argv = [], cwd /;
#   3. run /boot.py, then /main.py, in the REPL's globals (MODE "normal"); after a
#      soft reset into the raw REPL (MODE "raw") only boot.py, as real boards do;
#   4. return: `-i` then starts the REPL.
# Ctrl-C is held back (kbd_intr(-1)) while the filesystem is being set up: on a
# real board that part is C code that cannot be interrupted. Then vboot.py marks
# the terminal as ready (the unused control character c_cc[READY] := 0x19, which
# the REPL's terminal modes keep): board.py delivers no Ctrl-C before that mark,
# and afterwards only while the interpreter has its SIGINT handler installed, at
# a safe point (never inside littlefs: see README.md).
#
# Install mode, used by board.py to put files on the image while the board is off:
#   micropython vboot.py IMAGE BOARD install SYNC SRC DST [SRC DST ...]
import micropython as _mp

_mp.kbd_intr(-1)


def _vboot():
    import sys
    import os
    import vfs
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    sys.path.insert(0, here)
    import flashfile
    sys.path.pop(0)
    del sys.modules["flashfile"]  # the board's own imports do not see them
    del sys.modules["flashgeometry"]
    image, board, mode, sync = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    flash = flashfile.FlashFile(image, flashfile.GEOMETRY[board][0], sync=sync)
    try:
        fs = flashfile.filesystem(flash, board)
    except OSError as exc:
        if not flashfile.is_blank(flash):
            print("virtual board: the flash image does not mount (%r); not formatting it" % exc)
            fs = None
        else:
            flashfile.mkfs(flash, board)
            fs = flashfile.filesystem(flash, board)
    if mode == "install":
        if fs is None:
            sys.exit(3)
        vfs.mount(fs, "/flash")
        args = sys.argv[5:]
        for i in range(0, len(args), 2):
            _install(args[i], "/flash" + args[i + 1])
        vfs.umount("/flash")
        sys.exit(0)
    vfs.umount("/")
    if fs is not None:
        vfs.mount(fs, "/")
        os.chdir("/")
    sys.path.clear()
    sys.path.extend(["", ".frozen", "/lib"])
    ready = int(sys.argv[5]) if len(sys.argv) > 5 else None
    sys.argv.clear()
    if fs is None:
        return (), mode, ready
    return (("boot.py",) if mode == "raw" else ("boot.py", "main.py")), mode, ready


def _install(src, dst):
    import os
    path = ""
    for part in dst.split("/")[1:-1]:
        path += "/" + part
        try:
            os.mkdir(path)
        except OSError:
            pass
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data)


def _run(name):
    try:
        f = open(name)
    except OSError:
        return
    with f:
        code = compile(f.read(), name, "exec")
    try:
        exec(code, globals())
    except KeyboardInterrupt as exc:  # Ctrl-C stops main.py and the REPL starts, as on a board
        _report(exc)
    except Exception as exc:
        _report(exc)


def _report(exc):
    import sys
    sys.print_exception(exc)


def _ready(index):
    try:
        import termios
        attrs = termios.tcgetattr(0)
        attrs[6][index] = b"\x19"
        termios.tcsetattr(0, termios.TCSANOW, attrs)
    except Exception:  # not on a terminal, or no index given: nobody to tell
        pass


_scripts, _mode, _index = _vboot()
_mp.kbd_intr(3)
_ready(_index)
_name = None
for _name in _scripts:
    _run(_name)
if _mode == "raw":
    print("\x1b]vboot-repl\x07", end="")  # board.py drops the REPL banner after this mark
del _vboot, _install, _run, _report, _ready, _scripts, _mode, _index, _name, _mp
