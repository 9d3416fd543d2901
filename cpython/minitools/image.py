"""`mini image extract`: the files of a raw LittleFS flash dump (littlefs-python).

For logs from a board that no longer boots. The names in the image are checked
(minitools/safenames.py) before the first file is written: a crafted dump cannot
make the host write outside OUT_DIR.
"""
import os
import sys

from miniboard.flashgeometry import BLOCK_SIZE, GEOMETRY

from minitools import safenames
from minitools.mpremote_link import DeviceError, fail
from minitools.pull import size_text

PROG_SIZE = dict((board, GEOMETRY[board][1]) for board in GEOMETRY)
PIECE = 256          # what a file that cannot be read whole is read by (read_in_part)
PARTIAL = ".partial"  # where the readable part of such a file goes: NAME.partial


def open_image(path, board, offset=0, block_count=None):
    """Mount (read-only, in memory) the LittleFS in a flash dump; return the littlefs.LittleFS."""
    try:
        from littlefs import LittleFS, UserContext, LittleFSError
    except ImportError:
        raise DeviceError("reading flash images needs littlefs-python (pip install littlefs-python, or "
                          "pip install '.[device]')")
    if not os.path.isfile(path):
        raise DeviceError("%s: no such file" % path)
    with open(path, "rb") as f:
        f.seek(offset)
        data = bytearray(f.read())
    if len(data) < 2 * BLOCK_SIZE:
        raise DeviceError("%s: %d bytes after offset %d is too small for a LittleFS" % (path, len(data), offset))
    prog = PROG_SIZE[board]
    for count in ([block_count] if block_count else [0, len(data) // BLOCK_SIZE]):
        fs = LittleFS(context=UserContext(buffer=bytearray(data)), mount=False, block_size=BLOCK_SIZE,
                      block_count=count, read_size=prog, prog_size=prog, cache_size=min(BLOCK_SIZE, 4 * prog),
                      lookahead_size=32)
        try:
            fs.mount()
            return fs
        except LittleFSError:
            continue
    hint = ""
    found = _find_superblock(data)
    if found is not None:
        hint = "; a LittleFS superblock is at offset %d (0x%x): try --offset %d" % (
            offset + found, offset + found, offset + found)
    raise DeviceError("%s: no LittleFS at offset %d (block size %d)%s" % (path, offset, BLOCK_SIZE, hint))


def _find_superblock(data):
    for at in range(0, len(data) - BLOCK_SIZE + 1, BLOCK_SIZE):
        if data[at + 8:at + 16] == b"littlefs":
            return at
    return None


def list_image(fs, source):
    """([directory], [file], [(directory, why)]) of the image, as relative '/'-separated names.

    Every name is checked. Walks with scandir, checking each name before descending into
    it (littlefs-python's own walk would join a name like '../x' into a path and follow
    it). A directory that a damaged image cannot list is reported in the third list, with
    the entries read before the damage kept: the rest of the image is still worth having.
    """
    from littlefs import LittleFSError
    dirs, files, unlisted = [], [], []
    pending = [""]
    while pending:
        rel = pending.pop(0)
        entries = []
        try:
            for entry in fs.scandir("/" + rel):
                entries.append((entry.name, entry.type))
        except UnicodeDecodeError as exc:
            raise safenames.UnsafeName("%s holds a file name in /%s that is not UTF-8 (%s); refusing it, "
                                       "nothing was written" % (source, rel, exc.reason))
        except LittleFSError as exc:
            unlisted.append(("/" + rel, "cannot be listed: %s%s" % (
                _damage(exc), ", after %d entries" % len(entries) if entries else "")))
        for name, kind in sorted(entries):
            full = rel + "/" + name if rel else name
            safenames.check_name(full, source)  # before it is opened, or walked into
            if "/" in name:  # one entry whose name holds a separator: it would land (and read) elsewhere
                raise safenames.UnsafeName("%s reported the file name %s in /%s: a '/' inside one entry's name; "
                                           "refusing it, nothing was written" % (source, ascii(name), rel))
            if kind == 2:
                dirs.append(full)
                pending.append(full)
            else:
                files.append(full)
    return dirs, files, unlisted


def _damage(exc):
    return "%s (the image is damaged there)" % exc


def extract(path, board, out_dir, offset=0, block_count=None, force=False, log=None, warn=None):
    """Copy every file of the image that can be read into out_dir.

    Returns ([(path in the image, bytes)], [(path in the image, why it was skipped)],
    [(path in the image, what of it could not be read)]). A file or directory that a damaged
    image cannot give back is skipped (warn(path, why) is called) and the rest is still
    extracted. A file that can be read only in part is written as NAME.partial (read_in_part),
    never under its own name, and named (warn(path, what, "partial")). Every name in the image is checked before
    the first byte is written: one unsafe name (UnsafeName) and nothing is written, not
    even out_dir. Nothing is written through a symlink already in out_dir.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DeviceError("%s exists and is not a directory" % out_dir)
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not force:
        raise DeviceError("%s is not empty (extract into a new directory, or --force)" % out_dir)
    fs = open_image(path, board, offset, block_count)  # first: it says when littlefs-python is missing
    from littlefs import LittleFSError
    source = "the image %s" % path
    dirs, files, skipped = list_image(fs, source)
    safenames.check_listing(out_dir, dirs + files, source)
    if warn is not None:
        for where, why in skipped:
            warn(where, why)
    extracted, partial = [], []

    def skip(where, why):
        skipped.append((where, why))
        if warn is not None:
            warn(where, why)

    def partly(where, why):
        partial.append((where, why))
        if warn is not None:
            warn(where, why, "partial")

    os.makedirs(out_dir, exist_ok=True)
    for name in dirs:
        try:
            _no_symlink_on_the_way(out_dir, name)
            os.makedirs(safenames.inside(out_dir, name, source), exist_ok=True)
        except OSError as exc:
            skip("/" + name, "cannot be created: %s" % exc)
    for name in files:
        inside = "/" + name
        holes, damage = [], ""
        try:  # read whole before opening the host file: --force never truncates a file for nothing
            with fs.open(inside, "rb") as f:
                data = f.read()
        except LittleFSError as exc:
            damage = _damage(exc)
            data, holes = read_in_part(fs, inside)
            if data is None:
                skip(inside, "cannot be read: %s" % damage)
                continue
        if holes:  # never under the file's own name: a partial copy is not to be taken for the file
            side = name + PARTIAL
            if side in files:
                skip(inside, "cannot be read whole (%s), and its readable part is not written: /%s is a file "
                             "in the image too" % (damage, side))
                continue
            name = side
        try:
            _write_new(out_dir, name, safenames.inside(out_dir, name, source), data)
        except OSError as exc:
            skip(inside, "cannot be written: %s" % exc)
            continue
        if holes:
            lost = sum(stop - begin for begin, stop in holes)
            partly(inside, "%d of %d bytes cannot be read (bytes %s: %s); the other %d bytes are in %s, "
                           "each byte that cannot be read as a zero byte" % (
                               lost, len(data), ", ".join("%d..%d" % (begin, stop - 1) for begin, stop in holes),
                               damage, len(data) - lost, name))
            continue
        extracted.append((inside, len(data)))
        if log is not None:
            log("%s  %d bytes" % (inside, len(data)))
    return extracted, skipped, partial


def read_in_part(fs, inside):
    """(data, holes) of a file that cannot be read whole: every byte that can be read, the
    others as zero bytes, and the [begin, stop) ranges of those; (None, None) when no byte can.

    A damaged CTZ skip-list makes some of a file's blocks unreachable, not always all of them
    (the last block is the file's head; a block is found by following pointers from there).
    Pieces of PIECE bytes are read; where a readable piece meets one that is not, the
    boundary is found to the byte (reading a range that holds an unreadable byte fails).
    """
    from littlefs import LittleFSError
    try:
        size = fs.stat(inside).size
    except LittleFSError:
        return None, None

    def readable(begin, stop):
        got = b""
        try:  # unbuffered: a buffered reader would read ahead, past what was asked, into damage
            with fs.open(inside, "rb", buffering=0) as f:
                f.seek(begin)
                while len(got) < stop - begin:
                    more = f.read(stop - begin - len(got))
                    if not more:
                        return None
                    got += more
        except LittleFSError:
            return None
        return got

    pieces = []  # [begin, stop, bytes or None]
    for begin in range(0, size, PIECE):
        stop = min(size, begin + PIECE)
        pieces.append([begin, stop, readable(begin, stop)])
    if all(piece[2] is None for piece in pieces):
        return None, None
    for k, piece in enumerate(pieces):
        if piece[2] is not None:
            continue
        if k > 0 and pieces[k - 1][2] is not None:  # its first bytes may be readable
            good, bad = piece[0], piece[1]  # [start, good) is readable, [start, bad) is not
            while bad - good > 1:
                middle = (good + bad) // 2
                good, bad = (middle, bad) if readable(piece[0], middle) is not None else (good, middle)
            if good > piece[0]:
                pieces[k - 1][2] += readable(piece[0], good)
                pieces[k - 1][1] = piece[0] = good
        if k + 1 < len(pieces) and pieces[k + 1][2] is not None:  # ... and its last bytes
            bad, good = piece[0], piece[1]  # [good, stop) is readable, [bad, stop) is not
            while good - bad > 1:
                middle = (good + bad) // 2
                bad, good = (bad, middle) if readable(middle, piece[1]) is not None else (middle, good)
            if good < piece[1]:
                pieces[k + 1][2] = readable(good, piece[1]) + pieces[k + 1][2]
                pieces[k + 1][0] = piece[1] = good
    data, holes = bytearray(), []
    for begin, stop, got in pieces:
        if got is None:
            if holes and holes[-1][1] == begin:
                holes[-1][1] = stop
            else:
                holes.append([begin, stop])
        data += got if got is not None else bytes(stop - begin)
    return bytes(data), [tuple(hole) for hole in holes]


def _no_symlink_on_the_way(out_dir, name):
    """OSError if a component of name under out_dir is a symlink (--force extracts into old files)."""
    at = out_dir
    for part in name.split("/"):
        at = os.path.join(at, part)
        if os.path.islink(at):
            raise OSError("%s is a symlink: not written through" % at)


def _write_new(out_dir, name, checked, data):
    _no_symlink_on_the_way(out_dir, name)
    # O_NOFOLLOW: a symlink put there after the check is still not written through
    fd = os.open(checked, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def cmd_image_extract(args):
    def warn(where, why, what="skipped"):
        sys.stderr.write("mini image extract: %s %s: %s\n" % (what, where, why))

    try:
        extracted, skipped, partial = extract(args.image, args.board, args.out_dir, args.offset,
                                              args.block_count, args.force, log=print, warn=warn)
    except (DeviceError, safenames.UnsafeName, OSError) as exc:
        return fail("image extract", exc)
    print("extracted %d files (%s) from %s to %s" % (len(extracted), size_text(sum(n for _, n in extracted)),
                                                     args.image, args.out_dir))
    if skipped:
        print("%d files or directories could not be extracted (damaged in the image, or not writable here): "
              "see above" % len(skipped))
    if partial:
        print("%d files could be read only in part: each is NAME%s, see above" % (len(partial), PARTIAL))
    return 1 if skipped or partial else 0
