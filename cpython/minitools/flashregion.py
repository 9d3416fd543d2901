"""A miniflash journal (FORMAT.md 6) read out of a raw flash dump, for `mini cat` and
`mini image extract --region`:

    mini cat FLASH.BIN --offset 0x310000 [--size 0x100000] [--from-seq N] [--raw]
    mini image extract FLASH.BIN --region --offset 0x310000 [--size 0x100000] OUT_DIR
    mini image pull --port ADDR (--partition LABEL | --device EXPR) OUT.BIN

`image pull` reads a region off a running board through mpremote (the board reads its
own flash: an ESP32 data partition by label, or any block device EXPR evaluates to there,
e.g. "rp2.Flash(start=0x100000, len=0x100000)"), into a dump that `mini cat OUT.BIN
--offset 0` reads.

Without --size the region's size comes from its sector headers (they record the
geometry). extract writes OUT_DIR/journal.jsonl, a ministore journal (FORMAT.md 2)
holding the region's records as the exact lines that were on flash, so `mini verify`,
`mini cat` and `mini stats` read it; OUT_DIR/region.bin, the region's raw bytes; and
OUT_DIR/sectors.json, each sector in use with its number, base seq and erase count.
"""
import errno
import json
import os
import sys

import miniflash
from ministore import MiniStore, header_line, parse_line, HEADER
from minitools import byte_count, positive_count

SECTOR_SIZE = 4096


class RegionError(Exception):
    """A dump, offset or size that holds no readable region: one line, exit 2."""


class DumpDevice:
    """A read-only block device over the bytes of a flash dump."""

    def __init__(self, data, block_size):
        self.data = data
        self.block_size = block_size

    def readblocks(self, block, buf, offset=0):
        start = block * self.block_size + offset
        buf[:] = self.data[start:start + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        raise OSError(errno.EROFS, "a flash dump is read-only")

    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // self.block_size
        if op == 5:
            return self.block_size
        if op == 6:
            raise OSError(errno.EROFS, "a flash dump is read-only")
        return 0


def _geometry(data, sector_size):
    """The region size its first intact sector header records, or None."""
    for at in range(0, len(data) - sector_size + 1, sector_size):
        head = data[at:at + miniflash.HEADER_MAX]
        kind, header = parse_line(head[:head.find(b"\n") + 1])
        if (kind == HEADER and isinstance(header, dict) and header.get("format") == miniflash.FORMAT_NAME
                and header.get("sector_size") == sector_size and is_count(header.get("sectors"))):
            return header["sectors"] * sector_size
    return None


def is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 2


def open_region(path, offset, size, sector_size=SECTOR_SIZE):
    """A miniflash.Region over bytes offset..offset+size of the dump at `path`."""
    if not os.path.isfile(path):
        raise RegionError("%s: no such file" % path)
    if offset is None:
        offset = 0
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read() if size is None else f.read(size)
    if offset % sector_size:
        raise RegionError("--offset %d is not a multiple of the sector size %d" % (offset, sector_size))
    if size is None:
        size = _geometry(data, sector_size)
        if size is None:
            raise RegionError("%s: no miniflash sector header after offset %d (0x%x): give --offset, or --size "
                              "for a region with no journal yet" % (path, offset, offset))
        data = data[:size]
    if len(data) < size:
        raise RegionError("%s: the dump ends %d bytes into the %d-byte region at offset %d" % (
            path, len(data), size, offset))
    if size % sector_size or size < 2 * sector_size:
        raise RegionError("--size %d is not 2 or more sectors of %d bytes" % (size, sector_size))
    if _geometry(data, sector_size) is None and data.count(b"\xff") != len(data):
        # neither a region (no sector header) nor an erased one: reading on would say
        # "0 records", as if the device had written nothing
        raise RegionError("%s: no miniflash sector header at offset %d (0x%x), and the bytes are not erased "
                          "flash (0xff): is --offset right?" % (path, offset, offset))
    return miniflash.Region(DumpDevice(data, sector_size), name="%s@0x%x" % (path, offset))


def cat(args, out=None):
    out = out or sys.stdout
    region = open_region(args.journal, args.offset, args.size, args.sector_size)
    reader = MiniStore.stream(region, from_seq=args.from_seq)
    for seq, record in reader:
        obj = record if args.raw else {"seq": seq, "rec": record}
        out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    if reader.torn is not None:
        sys.stderr.write("mini cat: %s: torn tail skipped at byte %d (%s)\n" % (
            region.name, reader.torn.offset, reader.torn.reason))
    return 0


def _write_out(out_dir, name, data):
    """Write OUT_DIR/name, never through a symlink there (--force extracts over old files)."""
    path = os.path.join(out_dir, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RegionError("%s is a symlink: not written through" % path)
        raise
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def extract(path, offset, size, out_dir, sector_size=SECTOR_SIZE, force=False):
    """Write journal.jsonl, region.bin and sectors.json into out_dir; return (records, last seq, torn)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise RegionError("%s exists and is not a directory" % out_dir)
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not force:
        raise RegionError("%s is not empty (extract into a new directory, or --force)" % out_dir)
    region = open_region(path, offset, size, sector_size)
    reader = miniflash.FlashReader(region)
    lines = []
    for seq, record in reader:
        lines.append(reader.line)
    os.makedirs(out_dir, exist_ok=True)
    sectors = [{"sector": index, "number": number, "base_seq": base, "record_bytes": used,
                "erases": reader.erases[index]} for index, number, base, used in reader.ring]
    _write_out(out_dir, "journal.jsonl", header_line(reader.base_seq or 0) + b"".join(lines))
    _write_out(out_dir, "region.bin", region.device.data)
    _write_out(out_dir, "sectors.json", (json.dumps({"sector_size": region.sector_size, "sectors": region.sectors,
                                                     "in_use": sectors, "erases": reader.erases}, indent=1)
                                         + "\n").encode())
    return len(lines), reader.seq, reader.torn


def add_cat_args(parser):
    parser.add_argument("--offset", type=byte_count, default=None,
                        help="JOURNAL is a raw flash dump: the miniflash region starts here (bytes; 0x... accepted)")
    parser.add_argument("--size", type=positive_count, default=None,
                        help="the region's size in bytes (default: what its sector headers record)")
    parser.add_argument("--sector-size", type=positive_count, default=SECTOR_SIZE, help="erase sector size (default 4096)")


def is_dump(args):
    return getattr(args, "offset", None) is not None or getattr(args, "size", None) is not None


def add_extract_args(parser, littlefs_extract):
    """--region for `mini image extract`; without it the LittleFS extract runs (it needs --board)."""
    parser.add_argument("--region", action="store_true",
                        help="the dump holds a miniflash journal region (FORMAT.md 6), not a LittleFS")
    parser.add_argument("--size", type=positive_count, default=None,
                        help="with --region: the region's size in bytes (default: from its sector headers)")
    parser.add_argument("--sector-size", type=positive_count, default=SECTOR_SIZE, help="with --region: default 4096")

    def run(args):
        if not args.region:
            if args.board is None:
                sys.stderr.write("mini image extract: --board is required for a LittleFS image\n")
                return 2
            return littlefs_extract(args)
        try:
            records, last, torn = extract(args.image, args.offset, args.size, args.out_dir, args.sector_size,
                                          args.force)
        except (RegionError, miniflash.MiniError, OSError) as exc:
            sys.stderr.write("mini image extract: %s\n" % exc)
            return 2
        print("extracted %d records (last seq %s) from the region at offset %d of %s to %s" % (
            records, last, args.offset, args.image, os.path.join(args.out_dir, "journal.jsonl")))
        if torn is not None:
            print("torn tail (never acknowledged) left out at region byte %d: %s" % (torn.offset, torn.reason))
        return 0
    parser.set_defaults(func=run)


# ------------------------------------------------------------------ pull a region off a board

_PULL_CODE = """
import binascii
try:
    import esp32
except ImportError:
    pass
try:
    import rp2
except ImportError:
    pass
_mini_dev = %s
_mini_buf = bytearray(_mini_dev.ioctl(5, 0))
print('%s', _mini_dev.ioctl(4, 0), len(_mini_buf))
for _mini_i in range(_mini_dev.ioctl(4, 0)):
    _mini_dev.readblocks(_mini_i, _mini_buf)
    print(binascii.b2a_base64(_mini_buf).decode().strip())
del _mini_dev, _mini_buf
"""


def pull(port, expr, out_path):
    """Read the block device `expr` (evaluated on the board) into out_path; return (blocks, block size)."""
    import binascii
    from minitools import device
    device.check_port(port)
    out = device.mpremote(port, ["exec", _PULL_CODE % (expr, device.PREFIX)], timeout=1800)
    lines = out.decode("utf-8", "replace").splitlines()
    for at in range(len(lines)):
        if lines[at].startswith(device.PREFIX + " "):
            blocks, size = [int(v) for v in lines[at].split()[1:3]]
            data = [binascii.a2b_base64(line) for line in lines[at + 1:at + 1 + blocks]]
            if len(data) != blocks or any(len(block) != size for block in data):
                raise RegionError("%s: the board sent %d of %d blocks" % (port, len(data), blocks))
            with open(out_path, "wb") as f:
                for block in data:
                    f.write(block)
            return blocks, size
    raise RegionError("%s: unexpected answer from the board: %r" % (port, out[-300:]))


def add_pull(image_sub):
    """`mini image pull`: a region (or any block device) read off a running board."""
    p = image_sub.add_parser("pull", help="read a flash region off a running board (mpremote) into a dump file")
    p.add_argument("--port", default="auto", help="mpremote device: /dev/ttyUSB0, socket://HOST:PORT, auto")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--partition", metavar="LABEL", help="an ESP32 data partition, by its label")
    where.add_argument("--device", metavar="EXPR", help="a block device, as a Python expression on the board")
    p.add_argument("out", metavar="OUT.BIN")

    def run(args):
        from minitools import device
        expr = args.device or "esp32.Partition.find(esp32.Partition.TYPE_DATA, label=%r)[0]" % args.partition
        try:
            blocks, size = pull(args.port, expr, args.out)
        except (RegionError, device.DeviceError) as exc:
            sys.stderr.write("mini image pull: %s\n" % exc)
            return 2
        print("pulled %d blocks of %d bytes to %s; read it with: mini cat %s --offset 0" % (
            blocks, size, args.out, args.out))
        return 0
    p.set_defaults(func=run)
