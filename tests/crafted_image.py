# Flash images whose LittleFS holds names that no LittleFS API creates ('../x',
# '/abs', bytes that are not UTF-8), for the tests of `mini image extract`. A real
# image is built with littlefs-python, with placeholder names of the same length;
# then a placeholder's bytes are replaced in the image, and the metadata commit's
# CRC is fixed so that littlefs mounts it and lists the new name. LittleFS's CRC
# (lfs_crc: CRC-32, init 0xffffffff, no final xor) is linear: changing bytes by D
# changes the CRC of the commit by crc(0, D followed by zeros to the commit's CRC
# field), whatever came before. The CRC field's place is found by trying each
# 4-byte slot after the name until the patched image mounts and lists the name.
import struct

from miniboard.flashgeometry import GEOMETRY

BLOCK, PROG = GEOMETRY["esp32"]


def _crc0(data):
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc


def mount(buf, blocks, prog=PROG):
    from littlefs import LittleFS, UserContext
    fs = LittleFS(context=UserContext(buffer=bytearray(buf)), mount=False, block_size=BLOCK, block_count=blocks,
                  read_size=prog, prog_size=prog, lookahead_size=32)
    fs.mount()
    return fs


def raw_names(fs, directory="/"):
    """The names in a directory as bytes (littlefs-python decodes them; undo it, tolerating bad UTF-8)."""
    from littlefs import lfs
    names = []
    handle = lfs.dir_open(fs.fs, directory, "latin-1")
    try:
        info = lfs.dir_read(fs.fs, handle, "latin-1")
        while info:
            names.append(info.name.encode("latin-1"))
            info = lfs.dir_read(fs.fs, handle, "latin-1")
    finally:
        lfs.dir_close(fs.fs, handle)
    return names


def patch_name(image, placeholder, name, blocks, directory="/"):
    """image (bytearray) with the entry `placeholder` (bytes) in `directory` renamed to `name` (bytes)."""
    assert len(placeholder) == len(name)
    assert image.count(placeholder) == 1, "the placeholder must be unique in the image"
    at = image.index(placeholder)
    diff = bytes(a ^ b for a, b in zip(placeholder, name))
    block_end = (at // BLOCK + 1) * BLOCK
    for slot in range(at + len(name), block_end - 3):
        trial = bytearray(image)
        trial[at:at + len(name)] = name
        value = struct.unpack_from("<I", trial, slot)[0]
        struct.pack_into("<I", trial, slot, value ^ _crc0(diff + bytes(slot - at - len(name))))
        try:
            if name in raw_names(mount(trial, blocks), directory):
                return trial
        except Exception:  # not the CRC's slot: the commit does not check, littlefs rejects it
            continue
    raise AssertionError("could not rename %r to %r in the image" % (placeholder, name))


def crafted_image(names, blocks=16):
    """An image with, at its root, one file per name (bytes); a name ending in '/' is a
    directory holding one file, 'inside.txt'. Each file holds b'data of ' + its name."""
    from littlefs import LittleFS
    fs = LittleFS(block_size=BLOCK, block_count=blocks, read_size=PROG, prog_size=PROG, lookahead_size=32)
    fs.makedirs("/logs", exist_ok=True)
    with fs.open("/logs/good.txt", "wb") as f:
        f.write(b"a good file")
    placeholders = []
    for i, name in enumerate(names):
        is_dir = name.endswith(b"/")
        bare = name[:-1] if is_dir else name
        placeholder = (b"%c" % (ord("G") + i)) * len(bare)
        if is_dir:
            fs.mkdir("/" + placeholder.decode())
            with fs.open("/" + placeholder.decode() + "/inside.txt", "wb") as f:
                f.write(b"data of " + bare)
        else:
            with fs.open("/" + placeholder.decode(), "wb") as f:
                f.write(b"data of " + bare)
        placeholders.append((placeholder, bare))
    image = bytearray(fs.context.buffer)
    for placeholder, bare in placeholders:
        image = patch_name(image, placeholder, bare, blocks)
    return bytes(image)
