"""ministate: a state changed only by mutators that go through the journal.

StateManager.open(directory, initial, mutators) recovers the state (the newest valid
snapshot plus the journal records after it); apply(mutator) changes it durably.
Set, Delete and Update are ready-made mutators for a key-value state.
"""
import minishim as shim
from ministore import MiniError, ClosedError, encode_json, is_int, settle, FLOAT_TEXT_INEXACT, may_hold_float
from minisnap import SnapStore, NotFound, encode_state
from minilog import LogBrick, SegmentedLog, read_segments


# Bytes a record line adds around its body, at most: {"seq":S,"batch":K,"rec":...,"crc":"..."}\n
_LINE_OVERHEAD = 80


class UnknownMutator(MiniError):
    """The journal names a mutator class that was not passed in `mutators`."""


class ReplayError(MiniError):
    """A journaled mutation could not be applied again during recovery."""


class Mutator:
    """Base class of state changes.

    A subclass stores its arguments as attributes and defines apply(state). It is
    journaled as {"ClassName": {attribute: value, ...}} and rebuilt on replay as
    ClassName(**fields), so __init__ must take the attributes as keyword
    arguments, and apply must be deterministic: it runs again at every recovery.
    """

    def apply(self, state):
        raise NotImplementedError

    def fields(self):
        """The journaled fields: the public attributes. A name that starts with "_" is
        private (a cache, say) and never journaled, so __init__ need not take it."""
        out = {}
        attributes = self.__dict__
        for name in attributes:
            if name[:1] != "_":
                out[name] = attributes[name]
        return out

    def to_record(self):
        return {type(self).__name__: self.fields()}


def _check_rebuilds(mutator, record):
    """ValueError unless replay, which calls Class(**fields), rebuilds an equal mutator:
    otherwise an accepted apply() would leave a directory that no longer opens.

    Returns that rebuilt mutator, which apply() applies instead of the caller's (so the
    live state is what a replay gives), or None when a field is a list or dict: those
    could be the caller's own objects, so apply() parses the journal's bytes instead."""
    cls = type(mutator)
    fields = record[cls.__name__]
    try:
        again = cls(**fields)
        rebuilt = again.to_record()
    except Exception as exc:
        raise ValueError("%s cannot be journaled: replay would call %s(**%r), which raises %r "
                         "(__init__ must take exactly its public attributes)" % (
                             cls.__name__, cls.__name__, fields, exc))
    if rebuilt != record:
        raise ValueError("%s cannot be journaled: replay would rebuild it as %r, not %r" % (
            cls.__name__, rebuilt, record))
    for value in fields.values():
        if isinstance(value, (list, dict)):
            return None  # the caller's own list or dict: rebuild it from the journal's bytes
    return again


def _copy(value):
    return shim.loads(shim.dumps(value))


class Loaded(tuple):
    """What StateManager.load returns: (state, seq, snapshot_seq), with those names."""

    @property
    def state(self):
        return self[0]

    @property
    def seq(self):
        return self[1]

    @property
    def snapshot_seq(self):
        return self[2]

    def __repr__(self):
        return "Loaded(seq=%d, snapshot_seq=%d, state=%r)" % (self[1], self[2], self[0])


class Set(Mutator):
    """state[key] = value: with Delete and Update, a key-value store needs no code of its own."""

    def __init__(self, key, value):
        self.key = key
        self.value = value

    def apply(self, state):
        state[self.key] = self.value


class Delete(Mutator):
    """Remove state[key]; nothing happens if it is not there."""

    def __init__(self, key):
        self.key = key

    def apply(self, state):
        if self.key in state:
            del state[self.key]


class Update(Mutator):
    """state.update(values): several keys in one record."""

    def __init__(self, values):
        self.values = values

    def apply(self, state):
        for key in self.values:
            state[key] = self.values[key]


KEY_VALUE = (Set, Delete, Update)  # StateManager.open(d, mutators=KEY_VALUE)


class StateManager(LogBrick):
    """Use StateManager.open(). `state` is the live state: read it, never change it directly."""

    def __init__(self, directory="", keep=1):
        self._log = None
        self.directory = directory
        self._initial = {}
        self._registry = {}
        self._snaps = SnapStore(directory, keep)
        self.snapshot_every = None
        self.snapshot_bytes = None
        self._state = {}
        self.snapshot_seq = 0
        self.fell_back = False
        self.skipped_snapshots = []
        self._since_snapshot = 0
        self._broken = None  # why a failure closed the manager, if one did ("": an apply is under way, _commit)
        self._lock = shim.allocate_lock()

    @staticmethod
    def open(directory, initial=None, mutators=(), snapshot_every=1000, snapshot_bytes=None,
             keep=2, sync: "str | int" = "always", region=None):
        """Recover the state in `directory` (creating it if needed).

        snapshot_every: take a snapshot after that many records (None: never by count).
        snapshot_bytes: take one when a commit would bring the active journal segment to
        that size (counting at most 80 bytes of line around each record).
        keep: how many snapshots to keep; the journal is kept back to the oldest, so
        recovery can fall back to it if the newest is damaged.
        region: keep the journal on this raw flash region (miniflash, FORMAT.md 6) instead
        of in journal files; the snapshots stay in `directory`.
        """
        sm = StateManager._prepare(directory, initial, mutators, keep)
        for name, value in (("snapshot_every", snapshot_every), ("snapshot_bytes", snapshot_bytes)):
            if value is not None and (not is_int(value) or value < 1):
                raise ValueError("%s must be None or an int >= 1" % name)
        sm.snapshot_every = snapshot_every
        sm.snapshot_bytes = snapshot_bytes
        if region is not None:
            from miniflashlog import RegionLog
            log = RegionLog.open(sm.directory, region, start=sm._load_snapshot, apply=sm._replay_one, sync=sync,
                                 covered=sm._snaps.oldest_seq)
        else:
            log = SegmentedLog.open(sm.directory, start=sm._load_snapshot, apply=sm._replay_one, sync=sync)
        sm._log = log  # pyright: ignore[reportAttributeAccessIssue] (a RegionLog has what ministate uses of a SegmentedLog)
        sm._since_snapshot = log.seq - sm.snapshot_seq
        return sm

    @staticmethod
    def load(directory, initial=None, mutators=(), region=None):
        """Read-only recovery (no lock, no writes): a Loaded result, with `.state`,
        `.seq` and `.snapshot_seq` (it also unpacks as (state, seq, snapshot_seq)).

        For looking at a copy, for example one pulled from a device.
        """
        sm = StateManager._prepare(directory, initial, mutators, 1)
        sm._load_snapshot()
        if region is not None:
            from miniflashlog import read_region
            seq = read_region(region, sm.snapshot_seq, sm._replay_one)
        else:
            seq = read_segments(sm.directory, sm.snapshot_seq, sm._replay_one)
        return Loaded((sm._state, seq, sm.snapshot_seq))

    @staticmethod
    def _prepare(directory, initial, mutators, keep):
        sm = StateManager(shim.fspath(directory), keep)
        sm._initial = {} if initial is None else initial
        encode_json(sm._initial)  # the first snapshot must be able to store it
        sm._registry = {}
        for cls in mutators:
            if not (isinstance(cls, type) and issubclass(cls, Mutator)):
                raise TypeError("mutators must be Mutator subclasses, not %r" % (cls,))
            if cls.__name__ in sm._registry:
                raise ValueError("two mutators are named %s" % cls.__name__)
            sm._registry[cls.__name__] = cls
        return sm

    # -- recovery

    def _load_snapshot(self):
        """Load the newest valid snapshot (or the initial state); return its seq."""
        try:
            self._state, self.snapshot_seq = self._snaps.restore()
        except NotFound:
            self._state, self.snapshot_seq = _copy(self._initial), 0
        self.fell_back = self._snaps.fell_back
        self.skipped_snapshots = self._snaps.skipped
        return self.snapshot_seq

    def _decode(self, seq, record):
        if not isinstance(record, dict) or len(record) != 1:
            raise ReplayError("seq %d: %r is not a mutator record" % (seq, record))
        for name in record:
            cls = self._registry.get(name)
            if cls is None:
                raise UnknownMutator("seq %d: unknown mutator %r (known: %s)" % (
                    seq, name, ", ".join(sorted(self._registry)) or "none"))
            fields = record[name]
            if not isinstance(fields, dict):
                raise ReplayError("seq %d: fields of %s are not an object" % (seq, name))
            try:
                return cls(**fields)
            except Exception as exc:  # fields the class no longer takes or lacks, or now refuses
                raise ReplayError("seq %d: %s(**%r) failed: %r" % (seq, name, fields, exc))
        raise ReplayError("seq %d: empty mutator record" % seq)  # not reached: len(record) == 1

    def _replay_one(self, seq, record):
        mutator = self._decode(seq, record)
        try:
            mutator.apply(self._state)
        except Exception as exc:
            raise ReplayError("seq %d: %s.apply failed during recovery: %r" % (
                seq, type(mutator).__name__, exc))

    def _rebuild(self, cause):
        """Reload the state from disk, after a mutator raised halfway through apply().

        If that fails too, the state in memory may be what no reopen would give:
        the manager closes rather than show it or build on it."""
        try:
            self._load_snapshot()
            self._open_log().replay(self.snapshot_seq, self._replay_one)
            self._broken = None  # the state is what a reopen gives again
        except BaseException as exc:  # Ctrl-C too: a half-rebuilt state must not stay open
            self._break("a mutator raised %r, then rebuilding the state from disk failed (%r)" % (cause, exc))
            if isinstance(exc, OSError) or not isinstance(exc, Exception):
                raise  # the storage failed (a power cut, say): the I/O error, as for a failed write
            raise ClosedError("%s: %s" % (self.directory, self._broken))

    def _break(self, why):
        self._broken = why + ": the manager is closed, reopen it"
        self._close_quietly()

    # -- changing the state

    @property
    def state(self):
        """The live state (not a copy: never change it). Other threads read it under
        `with sm.lock:`, or they may see a mutator half applied."""
        if self._broken:  # not "": another thread's apply may be under way (an interrupted one is refused by the next call)
            raise ClosedError("%s: %s" % (self.directory, self._broken))
        return self._state

    def __repr__(self):
        return "<StateManager %r seq=%d snapshot_seq=%d mutators=%s%s>" % (
            self.directory, self.seq, self.snapshot_seq, sorted(self._registry),
            " closed" if self._log is None else "")

    @property
    def lock(self):
        """The lock that apply() holds: hold it to read `state` from another thread."""
        return self._lock

    def apply(self, mutator):
        """Apply one mutator; it is durable (under sync="always") and applied when this returns its seq."""
        with self._lock:
            return self._commit([mutator])

    def apply_many(self, mutators):
        """Apply mutators as one atomic batch with one sync; return the last seq."""
        mutators = list(mutators)
        with self._lock:
            return self._commit(mutators)

    def _commit(self, mutators):
        if self._broken == "":
            self._break("an apply was interrupted halfway")
        if self._broken is not None:  # say why it closed, not only that it is closed
            raise ClosedError("%s: %s" % (self.directory, self._broken))
        log = self._open_log()
        bodies = []
        size = 0
        todo = []
        for mutator in mutators:
            if not isinstance(mutator, Mutator):
                raise TypeError("%r is not a Mutator" % (mutator,))
            if self._registry.get(type(mutator).__name__) is not type(mutator):
                raise ValueError("%s is not in this manager's mutators" % type(mutator).__name__)
            record = mutator.to_record()
            # Encoded and rebuilt before apply: a field that check_value passes but the
            # encoder refuses (a lone surrogate), or a record that replay could not turn
            # back into this mutator, must stop it before it runs.
            body = settle(encode_json(record))
            # Apply what recovery applies: the mutator rebuilt from its record, not the
            # caller's object, whose list the caller may change after apply() (changing the
            # live state unjournaled), and rebuilt from the journal's bytes when a field is
            # a list or dict (a copy) or this runtime may parse a float back 1 ulp away.
            rebuilt = _check_rebuilds(mutator, record)
            if rebuilt is None or (FLOAT_TEXT_INEXACT and may_hold_float(body)):
                rebuilt = self._decode(self.seq + len(bodies) + 1, shim.loads(body))
            todo.append(rebuilt)
            bodies.append(body)
            size += len(body)
        if not bodies:
            return self.seq
        check = getattr(log, "check_fits", None)  # a region's: what its write would refuse
        if check is not None:
            check(bodies)  # before the apply, which the refusal could not undo
        due = self._snapshot_due(len(bodies), size)
        encoded = None
        # Apply first, journal second: a mutator that raises is never journaled.
        # It may have changed the state halfway, so the state is rebuilt from disk.
        # Until it is applied whole (or rebuilt), the state is suspect: a Ctrl-C between
        # a raise and _rebuild's own handler, or after the apply and before the journal
        # write, leaves it marked (""), and the next apply or snapshot refuses it rather
        # than build on or store a state no reopen would give. (`state` does not: under
        # way in another thread looks the same from outside the lock.)
        self._broken = ""
        try:
            for mutator in todo:
                mutator.apply(self._state)
            if due:
                # The snapshot this commit triggers must be storable before the
                # mutation is made durable: afterwards, raising would be a lie.
                encoded = encode_state(self._state, FLOAT_TEXT_INEXACT)
        except BaseException as exc:
            self._rebuild(exc)
            raise
        self._broken = None
        try:
            seq = log.append_encoded(bodies)
        except BaseException as exc:
            # The state in memory is ahead of the journal; only a reopen is trustworthy.
            self._break("the journal write failed (%r)" % (exc,))
            raise
        self._since_snapshot += len(bodies)
        if due:
            try:
                self._snapshot(encoded)
            except BaseException as exc:
                # The mutation is durable and applied, and the error is the caller's to see:
                # the manager closes, so that a retry of this apply cannot apply it a second
                # time (it stayed open, and a retry did); a reopen shows it applied.
                self._break(repr(exc))  # no message of its own: each string is heap on a board
                raise
        return seq

    def _snapshot_due(self, records, size):
        """Whether committing `records` records of `size` body bytes triggers an automatic snapshot."""
        if self.snapshot_every is not None and self._since_snapshot + records >= self.snapshot_every:
            return True
        # Decided before the write, so the segment's size after it is bounded, not measured.
        return self.snapshot_bytes is not None and (
            self._open_log().active_bytes() + size + _LINE_OVERHEAD * records >= self.snapshot_bytes)

    def create_snapshot(self):
        """Snapshot the state at the current seq, then compact the journal it covers. Returns the seq."""
        with self._lock:
            self._commit(())  # nothing to apply: ClosedError if an apply was interrupted
            return self._snapshot(None)

    def _snapshot(self, encoded):
        log = self._open_log()
        seq = log.seq
        # The live state becomes what this snapshot restores to (its floats parsed back
        # where this runtime does not read its float text back exactly).
        self._state, pieces = encoded or encode_state(self._state, FLOAT_TEXT_INEXACT)
        oldest = []

        def write_snapshot():
            self._snaps.create(self._state, seq, pieces)
            oldest.append(self._snaps.oldest_seq())
        # roll() syncs the journal before write_snapshot runs: a snapshot must never be
        # ahead of the durable journal. It is written, and the snapshots read back, while
        # no segment is open: on a board each of their files takes the heap block the old
        # segment's file held (SegmentedLog.roll).
        log.roll(write_snapshot)
        log.compact(oldest[0])
        self.snapshot_seq = seq
        self._since_snapshot = 0
        return seq
