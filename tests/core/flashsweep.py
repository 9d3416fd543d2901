# The power-cut sweep of miniflash (a journal on a raw flash region), on the
# flash-faithful NOR block device of tests/mp/blockdev.py, for CPython and the
# MicroPython unix port alike (tests/core/test_miniflash.py runs it).
#
# For one configuration (geometry, program unit, sync policy, reuse policy):
#   1. the workload runs once uncut, to count its program/erase ops 0..N-1;
#   2. for every op k and every mode (MODES: blockdev's "raise", "torn", "drop",
#      "reorder", and "erase-end" below) a fresh flash runs it with the power cut at op k (after_cut =
#      "lost": nothing reaches the flash after the cut);
#   3. a powered-on copy of the flash is read, then opened: the records must be a
#      run of attempted records with consecutive seqs, ending on a call boundary,
#      holding every acknowledged record the reuse policy had not given up, and the
#      journal must take one more record that reads back, also after another reboot.
# Besides those four, "erase-end": a cut erase that has erased the end of its
# sector, not the start (the header survives; a cut program raises, as "raise"),
# and "scatter": a cut program whose last page landed with some bits still erased, as
# NOR flash programs the bits of a page in parallel (and the pages of a program in
# order): the pages before the one at torn_fraction of it land, in that one a 24-byte
# run keeps some of its bits (and every fourth byte all of them) erased while the rest
# of the page lands (a damaged line, then intact lines of that page), and the pages
# after it stay erased (a cut erase raises, as "raise").
# The flash also checks every program: whole aligned units of `prog` bytes, that
# only clear bits of erased bytes (0xFF over written bytes changes nothing), except
# the all-zero program that retires a sector header before its erase.
import blockdev
import miniflash
from ministore import MiniStore, record_line, encode_json

SECTOR = 4096
MODES = blockdev.MODES + ("erase-end", "scatter")


class WatchedFlash(blockdev.RAMFlash):
    prog = 256
    violations = 0

    def writeblocks(self, block, buf, offset=None):
        if self.mode == "scatter" and self.ops == self.cut_at and offset is not None:
            self.ops += 1
            self.dead = True
            start = block * self.block_size + offset
            hole = int(len(buf) * self.torn_fraction)
            page = max(256, self.prog)
            end = min(len(buf), (start + hole) // page * page + page - start)  # the cut page's end
            landed = bytearray(buf[:end])
            for i in range(hole, min(hole + 24, end)):
                landed[i] |= 0xFF if i % 4 == 0 else 0x55  # bits still erased
            self._program(start, landed)
            raise blockdev.PowerCut(blockdev.EIO)
        if 0 <= self.cut_at < self.ops:
            pass  # after the cut: lost, and written by a driver that may not know (mode "drop")
        elif offset is None or offset % self.prog or len(buf) % self.prog:
            self.violations += 1
        else:
            start = block * self.block_size + offset
            n = len(buf)
            mask = (1 << (8 * n)) - 1
            old = int.from_bytes(self.mem[start:start + n], "big")
            new = int.from_bytes(buf, "big")
            # A 0 bit programmed where a 0 already is: the byte was not erased. Only the
            # zeros that retire a sector header (at offset 0) may go over written bytes.
            head = bytes(buf).rstrip(b"\xff")
            retire = offset == 0 and head.count(b"\x00") == len(head)
            if not retire and (old ^ mask) & (new ^ mask):
                self.violations += 1
        blockdev.RAMFlash.writeblocks(self, block, buf, offset)

    def ioctl(self, op, arg):
        if op == 6 and self.mode == "erase-end" and self.ops == self.cut_at:
            # An erase cut short that has erased the end of the sector but not its start
            # (an interrupted erase leaves cells anywhere between their old and erased state).
            self.ops += 1
            self.dead = True
            start = arg * self.block_size + int(self.block_size * self.torn_fraction)
            self.mem[start:(arg + 1) * self.block_size] = b"\xff" * ((arg + 1) * self.block_size - start)
            raise blockdev.PowerCut(blockdev.EIO)
        return blockdev.RAMFlash.ioctl(self, op, arg)

    def copy(self):
        twin = WatchedFlash(self.block_size, self.blocks, bytearray(self.data))
        twin.prog = self.prog
        return twin


def record(i, size):
    tag = "r%d." % i
    return {"i": i, "fill": (tag * (size // len(tag) + 1))[:size]}


def workload(long=False):
    steps = [("open",), ("append", 20), ("append", 134), ("append", 2500), ("many", [30, 40, 50])]
    steps += [("append", 134)] * 6 + [("many", [100, 1200, 20]), ("append", 3000), ("close",), ("open",)]
    middle = [("append", 134)] * 10 + [("many", [500, 500, 500, 500]), ("append", 2900), ("append", 60),
                                       ("many", [1500, 10]), ("append", 3000), ("append", 134)]
    for _ in range(3 if long else 1):
        steps += middle
    return steps + [("close",)]


class Config:
    def __init__(self, geometry, sync, policy, sectors=4, long=False):
        self.geometry = geometry
        self.prog = blockdev.GEOMETRY[geometry][1]
        self.sync = sync
        self.policy = policy      # ("retain", bytes) or ("release", records kept before the last)
        self.sectors = sectors
        self.steps = workload(long)
        self.records = []
        self.bounds = [0]
        for step in self.steps:
            for size in ([step[1]] if step[0] == "append" else step[1] if step[0] == "many" else []):
                self.records.append(record(len(self.records) + 1, size))
            if step[0] in ("append", "many"):
                self.bounds.append(len(self.records))
        self.line_bytes = [0]  # line_bytes[s]: bytes of the lines of records 1..s
        for i in range(len(self.records)):
            line = record_line(i + 1, encode_json(self.records[i]))
            self.line_bytes.append(self.line_bytes[-1] + len(line))

    def label(self):
        return "%s prog=%d sync=%s %s=%d" % (self.geometry, self.prog, self.sync, self.policy[0], self.policy[1])

    def region(self, flash):
        retain = self.policy[1] if self.policy[0] == "retain" else None
        return miniflash.Region(flash, prog=self.prog, retain=retain)


class Outcome:
    def __init__(self):
        self.acked = 0       # records acknowledged (durable) before the cut
        self.released = 0    # the last seq the workload released
        self.error = None


def run(config, flash):
    """Run the workload; never raises. Acknowledged: the call returned with every op before the cut."""
    out = Outcome()
    store = None
    n = 0
    try:
        for step in config.steps:
            op = step[0]
            if op == "open":
                store = MiniStore.open(config.region(flash), sync=config.sync)
                if store.seq != n:
                    raise AssertionError("open: seq %d, expected %d" % (store.seq, n))
                if config.policy[0] == "release":
                    store.release(out.released)
            elif op == "close":
                store.close()
                if not flash.dead:
                    out.acked = n
                store = None
            else:
                count = 1 if op == "append" else len(step[1])
                n += count
                if op == "append":
                    seq = store.append(config.records[n - 1])
                else:
                    seq = store.append_many(config.records[n - count:n])
                if seq != n:
                    raise AssertionError("%s returned %d, expected %d" % (op, seq, n))
                if not flash.dead:
                    out.acked = store.durable_seq
                    if config.policy[0] == "release" and n > config.policy[1]:
                        out.released = n - config.policy[1]
                        store.release(out.released)
    except Exception as exc:
        out.error = exc
    if store is not None and not store.closed:
        store._abandon()  # the power is off: drop the handle without writing
    return out


def verify(config, flash, out):
    """Reboot onto a copy of `flash` and check the journal; return None or what is wrong."""
    image = flash.copy()
    try:
        before = list(MiniStore.stream(config.region(image)))
    except Exception as exc:
        return "read-only stream failed: %r" % (exc,)
    got = []
    try:
        store = MiniStore.open(config.region(image), sync=config.sync,
                               replay=lambda seq, rec: got.append((seq, rec)))
    except Exception as exc:
        return "open failed: %r" % (exc,)
    try:
        if before != got:
            return "read-only stream and open's replay differ"
        if config.policy[0] == "release":
            store.release(out.released)  # as the application does after each open
        n = store.seq
        first = got[0][0] if got else n + 1
        for i in range(len(got)):
            seq, rec = got[i]
            if seq != first + i or seq > len(config.records) or rec != config.records[seq - 1]:
                return "record %d of %d (seq %d) is not the attempted one" % (i, len(got), seq)
        if n < out.acked:
            return "acknowledged records lost: acked %d, last seq %d" % (out.acked, n)
        if n not in config.bounds:
            return "last seq %d is not a call boundary" % n
        if config.policy[0] == "release":
            if first > out.released + 1:
                return "records %d..%d were not released, yet are gone" % (out.released + 1, first - 1)
        else:
            # Reuse keeps at least `retain` bytes of records (less only by lines of a batch a cut tore).
            kept = config.line_bytes[n] - config.line_bytes[first - 1]
            if first > 1 and kept + 3000 < config.policy[1]:
                return "only %d bytes of records kept, retain=%d" % (kept, config.policy[1])
        extra = {"extra": n + 1}
        if store.append(extra) != n + 1:
            return "append after recovery did not take seq %d" % (n + 1)
        store.close()
    except Exception as exc:
        return "after open: %r" % (exc,)
    finally:
        if not store.closed:
            store._abandon()
    for when in ("after recovery", "after another reboot"):
        if when != "after recovery":
            image = image.copy()
        try:
            back = MiniStore.replay(config.region(image))
        except Exception as exc:
            return "replay %s failed: %r" % (when, exc)
        if not back or back[-1] != extra or back.seq != n + 1 or back.torn is not None:
            return "replay %s: seq %r, torn %r" % (when, back.seq, back.torn)
    return None


def sweep(config, torn_fractions=(0.5,), report=None):
    """Cut at every op in every mode; return (checks, failures, acked records seen, erases of the uncut run)."""
    flash = WatchedFlash(SECTOR, config.sectors)
    flash.prog = config.prog
    out = run(config, flash)
    if out.error is not None or out.acked != len(config.records):
        raise AssertionError("%s: the uncut workload failed: %r (acked %d of %d)" % (
            config.label(), out.error, out.acked, len(config.records)))
    problem = verify(config, flash, out)
    if problem is not None or flash.violations:
        raise AssertionError("%s: uncut: %s (%d bad programs)" % (config.label(), problem, flash.violations))
    total = flash.ops
    checks = failures = acked = 0
    for fraction in torn_fractions:
        for k in range(total):
            for mode in MODES:
                if fraction != torn_fractions[0] and mode not in ("torn", "scatter"):
                    continue
                flash = WatchedFlash(SECTOR, config.sectors)
                flash.prog = config.prog
                flash.mode = mode
                flash.after_cut = "lost"
                flash.cut_at = k
                flash.torn_fraction = fraction
                out = run(config, flash)
                checks += 1
                acked += out.acked
                if not flash.dead:
                    problem = "the workload ended before op %d" % k
                elif out.error is not None and not isinstance(out.error, OSError) and mode != "drop":
                    # raise/torn/reorder: the cut raises, and nothing else may go wrong. After
                    # "drop" the writer cannot know, and its own reopen reads what it lost.
                    problem = "workload raised %r" % (out.error,)
                elif flash.violations:
                    problem = "%d programs over written bytes or not whole units" % flash.violations
                else:
                    problem = verify(config, flash, out)
                if problem is not None:
                    failures += 1
                    if report is not None:
                        report("FAIL %s cut_at=%d mode=%s torn=%s acked=%d: %s" % (
                            config.label(), k, mode, fraction, out.acked, problem))
    return checks, failures, acked, total
