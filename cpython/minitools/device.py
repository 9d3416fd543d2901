"""The `mini` commands that talk to a device, or read its flash: their command line.

    mini pull [--port PORT] REMOTE_DIR LOCAL_DIR   copy a state directory off a board (mpremote), then verify it
    mini tail --port PORT JOURNAL [--follow]       print a journal's records on the board as they are appended
    mini image extract FLASH.BIN --board B OUT_DIR  extract every file of a LittleFS flash dump (littlefs-python)

`mini tail` on a state or queue directory follows its segments; a record that a
compaction removes before the next poll (it is in the snapshot) is not printed. `-n N`
starts with exactly the last N records (read back from the end, across segments); a
file that is not a journal is refused (exit 2); a journal that appears, is created
again or shrinks while tail follows it is read again from its start, printing only
records after the last seq shown (README, `mini tail`).

The work is done in: mpremote_link.py (the mpremote client), pull.py, tail.py and
follower.py (tail's parser of the polled bytes), image.py, and safenames.py (the
check of every name a device or an image reports, before anything is written).
PORT is anything mpremote's `connect` takes: /dev/ttyUSB0, socket://127.0.0.1:PORT
(the virtual board, boards/virtual), auto.
"""
from minitools import byte_count, positive_count
from minitools.follower import Follower
from minitools.image import PROG_SIZE, cmd_image_extract, extract, open_image
from minitools.mpremote_link import PREFIX, DeviceError, check_port, device_eval, mpremote
from minitools.pull import cmd_pull, pull
from minitools.tail import cmd_tail

__all__ = ["Follower", "DeviceError", "PREFIX", "check_port", "device_eval", "mpremote", "pull",
           "extract", "open_image", "register"]


def register(sub):
    """Add pull, tail and image to the `mini` parser's subcommands."""
    p = sub.add_parser("pull", help="copy a state directory off a device (mpremote), then verify it")
    p.add_argument("--port", default="auto", help="mpremote device: /dev/ttyUSB0, socket://HOST:PORT, auto")
    p.add_argument("remote", metavar="REMOTE_DIR", help="directory (or file) on the device, e.g. :data")
    p.add_argument("local", metavar="LOCAL_DIR", help="new local directory that becomes its copy")
    p.add_argument("--force", action="store_true", help="replace LOCAL_DIR if it is not empty")
    p.add_argument("--progress", action="store_true", help="always show the progress bar (else: large pulls on a tty)")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("tail", help="print a device journal's records as they are appended (polls over mpremote)")
    p.add_argument("--port", default="auto", help="mpremote device: /dev/ttyUSB0, socket://HOST:PORT, auto")
    p.add_argument("journal", metavar="JOURNAL", help="journal file, or state/queue directory, on the device")
    p.add_argument("-f", "--follow", action="store_true", help="keep polling for new records (Ctrl-C stops)")
    p.add_argument("-n", "--lines", type=int, default=10, metavar="N",
                   help="start with the last N records (default 10; -1: all; 0: only new ones)")
    p.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds from one poll to the next (default 1)")
    p.add_argument("--raw", action="store_true", help="print only the records, without their seq")
    p.add_argument("--resume", action="store_true",
                   help="the board runs its app from main.py: soft-reset it after each poll, so the app "
                        "runs on (each poll interrupts it, as any mpremote command does)")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("image", help="read a raw flash dump")
    image_sub = p.add_subparsers(dest="image_command", metavar="SUBCOMMAND")
    image_sub.required = True
    e = image_sub.add_parser("extract", help="extract every file of a LittleFS flash image")
    e.add_argument("image", metavar="FLASH.BIN")
    e.add_argument("--board", choices=sorted(PROG_SIZE), help="flash geometry of the board (LittleFS images)")
    e.add_argument("out_dir", metavar="OUT_DIR")
    e.add_argument("--offset", type=byte_count, default=0,
                   help="where the filesystem starts in the dump (bytes; 0x... accepted)")
    e.add_argument("--block-count", type=positive_count, default=None, help="filesystem size in 4096-byte blocks")
    e.add_argument("--force", action="store_true", help="extract into a non-empty OUT_DIR")
    e.set_defaults(func=cmd_image_extract)
    from minitools import flashregion
    flashregion.add_extract_args(e, cmd_image_extract)  # --region: a miniflash journal (FORMAT.md 6)
    flashregion.add_pull(image_sub)  # mini image pull: a region read off a running board
