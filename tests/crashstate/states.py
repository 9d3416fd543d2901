# The crash states that a persistence model allows, from a recorded trace (recorder.py).
#
# A crash at point k (after the first k operations of the trace were issued) leaves
# every operation that a sync before k forced to disk, plus any subset of the others
# ("pending") that the model allows, some of them only in part. Two models:
#
# ext4 (data=ordered, the default on Linux). Metadata (mkdir, create, unlink, rename)
#   and the size of appended files go through the journal, in order: a crash keeps a
#   prefix of them. Any fsync/fdatasync (of any file or directory) commits the journal,
#   and data=ordered writes an appended block before the size that makes it visible,
#   so an append never shows garbage, but it can stop at a page (4096) boundary.
#   Overwrites in place are not journaled: each may be lost or torn at a sector (512)
#   boundary until that file is synced.
#
# weak (what POSIX promises, and no more). An fsync/fdatasync of a file makes that
#   file's earlier writes durable, and nothing else; a new, removed or renamed directory
#   entry is durable only after an fsync of its directory. Anything else may be lost,
#   in any combination: unsynced writes lost or reordered (a later one kept, an earlier
#   one lost), an append kept in part, or as zeros or garbage (the size reached the disk,
#   the data did not), a new directory entry lost while its file's data is synced, a
#   rename kept while the data it names is not.
#
# The number of states is bounded: at each crash point, all pending operations kept,
# none, each one alone left out, each one alone kept, and each write's torn variants
# (with all the others kept, and with none). MINI_TORTURE=long adds every pair left
# out (up to 24 pending operations), 48 seeded random subsets per crash point, and
# torn cuts every 16 bytes. Identical images are checked once (for the latest
# crash point that produces them: the most operations acknowledged).
import random

PAGE = 4096
SECTOR = 512
META = ("mkdir", "creat", "unlink", "rename")
_GARBAGE = bytes((i * 151 + 89) & 0xFF for i in range(256))


def dirname(path):
    cut = path.rfind("/")
    return "." if cut < 0 else path[:cut]


class Image:
    """Directories and files of a crash state: what a reboot would find."""

    def __init__(self, dirs, files):
        self.dirs = dirs      # frozenset of relative paths
        self.files = files    # {relative path: bytes}
        self.key = (tuple(sorted(dirs)), tuple(sorted(files.items())))

    def __eq__(self, other):
        return self.key == other.key

    def __hash__(self):
        return hash(self.key)


def apply_ops(initial, trace, choose=None):
    """Replay `trace` over `initial` ((dirs, {path: bytes})); return an Image.

    choose(i, op) decides for each operation: False (not on disk), True (all of it),
    or for a write ("prefix", n), "zeros" or "garbage". Without it, everything lands.
    """
    dirs = set(initial[0])
    names = {}
    data = {}
    for ino, path in enumerate(sorted(initial[1]), 1):  # the recorder numbers them the same way
        names[path] = ino
        data[ino] = bytearray(initial[1][path])
    for i, op in enumerate(trace):
        kind = op[0]
        if kind in ("mark", "sync", "dsync"):
            continue
        how = True if choose is None else choose(i, op)
        if how is False:
            continue
        if kind == "write":
            ino, offset, chunk = op[1], op[2], op[3]
            if how is not True:
                if how == "zeros":
                    chunk = bytes(len(chunk))
                elif how == "garbage":
                    chunk = (_GARBAGE * (len(chunk) // 256 + 1))[:len(chunk)]
                else:
                    chunk = chunk[:how[1]]
            buf = data.setdefault(ino, bytearray())
            if offset > len(buf):
                buf.extend(bytes(offset - len(buf)))  # a hole reads as zeros
            buf[offset:offset + len(chunk)] = chunk
        elif kind == "mkdir":
            dirs.add(op[1])
        elif kind == "creat":
            names[op[1]] = op[2]
            data.setdefault(op[2], bytearray())
        elif kind == "unlink":
            names.pop(op[1], None)
        elif kind == "rename":
            if op[1] in names:
                names[op[2]] = names.pop(op[1])
        else:
            raise ValueError("unknown operation %r" % (op,))
    files = {}
    for path, ino in names.items():
        if _reachable(path, dirs):  # a file in a directory whose own entry was lost is gone too
            files[path] = bytes(data[ino])
    return Image(frozenset(d for d in dirs if _reachable(d, dirs)), files)


def _reachable(path, dirs):
    parent = dirname(path)
    while parent != ".":
        if parent not in dirs:
            return False
        parent = dirname(parent)
    return True


def classify(initial, trace):
    """For each write, whether it appends (starts at or past the end of its file)."""
    sizes = {}
    for ino, path in enumerate(sorted(initial[1]), 1):
        sizes[ino] = len(initial[1][path])
    appends = {}
    for i, op in enumerate(trace):
        if op[0] == "creat":
            sizes[op[2]] = 0
        elif op[0] == "write":
            ino, offset, chunk = op[1], op[2], op[3]
            appends[i] = offset >= sizes.get(ino, 0)
            sizes[ino] = max(sizes.get(ino, 0), offset + len(chunk))
    return appends


def forced_at(trace, model, appends):
    """For each operation, the index of the first later sync that makes it durable (None: none does)."""
    out = [None] * len(trace)
    for i, op in enumerate(trace):
        kind = op[0]
        if kind in ("mark", "sync", "dsync"):
            continue
        for j in range(i + 1, len(trace)):
            sync = trace[j]
            if sync[0] not in ("sync", "dsync"):
                continue
            if model == "ext4":
                if kind in META or appends.get(i):
                    hit = True  # a journal commit: every earlier metadata change and append
                else:
                    hit = sync[0] == "sync" and sync[1] == op[1]
            elif kind == "write":
                hit = sync[0] == "sync" and sync[1] == op[1]
            else:
                path = op[2] if kind == "rename" else op[1]
                hit = sync[0] == "dsync" and sync[1] == dirname(path)
            if hit:
                out[i] = j
                break
    return out


def _cuts(offset, chunk, model, is_append, long):
    """Torn variants of one write."""
    n = len(chunk)
    if model == "ext4":
        unit = PAGE if is_append else SECTOR
        return [("prefix", c) for c in range(1, n) if (offset + c) % unit == 0]
    # A few bytes in (a pad and a record differ from their third byte), the quarters, all but one.
    cuts = {1, 8, n // 4, n // 2, 3 * n // 4, n - 1}
    lines = [i + 1 for i in range(n - 1) if chunk[i:i + 1] == b"\n"]
    cuts.update(lines if long else lines[:2])
    if long:
        cuts.update(range(1, n, 16))
    variants = [("prefix", c) for c in sorted(cuts) if 0 < c < n]
    if is_append and n > 1:
        variants.append("zeros")
        # A new file's first write (a journal's header) read back as garbage is left out:
        # it cannot be told from a file someone else wrote, which every brick refuses
        # (FormatError, FORMAT.md 2.1) rather than overwrite. README "Known limitations".
        if offset > 0:
            variants.append("garbage")
    return variants


def crash_states(initial, trace, model, long=False, seed=0, reorder_appends=True):
    """{Image: (k, description)} for every crash point k, keeping the largest k per image.

    reorder_appends=False (weak model only): the unsynced appends to one file land in
    order, so a crash keeps a prefix of them (the last one possibly torn).
    """
    if model not in ("ext4", "weak"):
        raise ValueError("model must be 'ext4' or 'weak'")
    appends = classify(initial, trace)
    forced = forced_at(trace, model, appends)
    rng = random.Random(seed)
    found = {}
    for k in range(len(trace) + 1):
        pending = [i for i in range(k) if trace[i][0] not in ("mark", "sync", "dsync")
                   and (forced[i] is None or forced[i] >= k)]
        for picked, why in _choices(trace, pending, model, appends, long, rng):
            if not reorder_appends:
                picked = _in_order(trace, pending, appends, picked)
            def choose(i, op, picked=picked):
                if forced[i] is not None and forced[i] < k:
                    return True
                return picked.get(i, False)
            image = apply_ops(initial, trace[:k], choose)
            found[image] = (k, why)
    return found


def _choices(trace, pending, model, appends, long, rng):
    """(the pending operations kept {index: how}, description) at one crash point."""
    def variants(i):
        op = trace[i]
        return _cuts(op[2], op[3], model, appends[i], long) if op[0] == "write" else []

    every = dict((i, True) for i in pending)
    yield every, "all pending kept"
    if not pending:
        return
    yield {}, "all pending lost"
    if model == "ext4":
        ordered = [i for i in pending if trace[i][0] in META or appends.get(i)]
        overwrites = [i for i in pending if i not in ordered]
        for p in range(len(ordered)):
            for rest in (overwrites, []):
                kept = dict((i, True) for i in ordered[:p] + rest)
                yield kept, "journal kept up to op %d" % (ordered[p] if p < len(ordered) else -1)
                for v in variants(ordered[p]):
                    yield _with(kept, ordered[p], v), "journal kept up to op %d, which is torn (%r)" % (ordered[p], v)
        for i in overwrites:
            yield _without(every, i), "overwrite %d lost" % i
            yield {i: True}, "overwrite %d alone kept" % i
            for v in variants(i):
                yield _with(every, i, v), "overwrite %d torn (%r)" % (i, v)
                yield {i: v}, "overwrite %d alone kept, torn (%r)" % (i, v)
        return
    for i in pending:
        yield _without(every, i), "op %d lost" % i
        yield {i: True}, "op %d alone kept" % i
        for v in variants(i):
            yield _with(every, i, v), "op %d kept as %r" % (i, v)
            yield {i: v}, "op %d alone kept as %r" % (i, v)
    if long:
        if len(pending) <= 24:
            for a in range(len(pending)):
                for b in range(a + 1, len(pending)):
                    yield _without(_without(every, pending[a]), pending[b]), "ops %d and %d lost" % (
                        pending[a], pending[b])
        for _ in range(48):
            kept = {}
            for i in pending:
                if rng.random() < 0.5:
                    options = [True] + variants(i)
                    kept[i] = options[rng.randrange(len(options))]
            yield kept, "random subset %r" % sorted(kept.items())


def _in_order(trace, pending, appends, picked):
    """Drop the appends to a file that follow one of its appends that did not land whole."""
    cut = set()
    out = dict(picked)
    for i in pending:
        if not appends.get(i):
            continue
        ino = trace[i][1]
        if ino in cut:
            out.pop(i, None)
        elif out.get(i) is not True:
            cut.add(ino)
    return out


def _with(kept, i, how):
    out = dict(kept)
    out[i] = how
    return out


def _without(kept, i):
    out = dict(kept)
    out.pop(i, None)
    return out
