# ministate: a state changed only by mutators that go through the journal.
# Recovery is the newest valid snapshot plus the journal records after it.
import minishim as shim
from ministore import MiniError, encode_json, settle, FLOAT_TEXT_INEXACT, may_hold_float
from minisnap import LogOwner, SnapStore, SegmentedLog, NotFound, read_segments


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
        return dict(self.__dict__)

    def to_record(self):
        return {type(self).__name__: self.fields()}


def _copy(value):
    return shim.loads(shim.dumps(value))


class StateManager(LogOwner):
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

    @staticmethod
    def open(directory, initial=None, mutators=(), snapshot_every=1000, snapshot_bytes=None,
             keep=2, sync: "str | int" = "always"):
        """Recover the state in `directory` (creating it if needed).

        snapshot_every: take a snapshot after that many records (None: never by count).
        snapshot_bytes: take one when a commit would bring the active journal segment to
        that size (counting at most 80 bytes of line around each record).
        keep: how many snapshots to keep; the journal is kept back to the oldest, so
        recovery can fall back to it if the newest is damaged.
        """
        sm = StateManager._prepare(directory, initial, mutators, keep)
        for name, value in (("snapshot_every", snapshot_every), ("snapshot_bytes", snapshot_bytes)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError("%s must be None or an int >= 1" % name)
        sm.snapshot_every = snapshot_every
        sm.snapshot_bytes = snapshot_bytes
        log = SegmentedLog.open(directory, after_seq=sm._load_snapshot, apply=sm._replay_one, sync=sync)
        sm._log = log
        sm._since_snapshot = log.seq - sm.snapshot_seq
        return sm

    @staticmethod
    def load(directory, initial=None, mutators=()):
        """Read-only recovery (no lock, no writes): return (state, seq, snapshot_seq).

        For looking at a copy, for example one pulled from a device.
        """
        sm = StateManager._prepare(directory, initial, mutators, 1)
        sm._load_snapshot()
        seq = read_segments(directory, sm.snapshot_seq, sm._replay_one)
        return sm._state, seq, sm.snapshot_seq

    @staticmethod
    def _prepare(directory, initial, mutators, keep):
        sm = StateManager(directory, keep)
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
            except TypeError as exc:  # fields the class no longer takes, or lacks
                raise ReplayError("seq %d: %s(**%r) failed: %s" % (seq, name, fields, exc))
        raise ReplayError("seq %d: empty mutator record" % seq)  # not reached: len(record) == 1

    def _replay_one(self, seq, record):
        mutator = self._decode(seq, record)
        try:
            mutator.apply(self._state)
        except Exception as exc:
            raise ReplayError("seq %d: %s.apply failed during recovery: %r" % (
                seq, type(mutator).__name__, exc))

    def _rebuild(self):
        """Reload the state from disk, after a mutator raised halfway through apply()."""
        self._load_snapshot()
        self._open_log().replay(self.snapshot_seq, self._replay_one)

    # -- changing the state

    @property
    def state(self):
        return self._state

    def apply(self, mutator):
        """Apply one mutator; it is durable (under sync="always") and applied when this returns its seq."""
        return self._commit([mutator])

    def apply_many(self, mutators):
        """Apply mutators as one atomic batch with one sync; return the last seq."""
        return self._commit(list(mutators))

    def _commit(self, mutators):
        log = self._open_log()
        bodies = []
        size = 0
        todo = []
        for mutator in mutators:
            if not isinstance(mutator, Mutator):
                raise TypeError("%r is not a Mutator" % (mutator,))
            if self._registry.get(type(mutator).__name__) is not type(mutator):
                raise ValueError("%s is not in this manager's mutators" % type(mutator).__name__)
            # Encoded before apply: a field that check_value passes but the encoder
            # refuses (a lone surrogate) must stop the mutator before it runs.
            body = settle(encode_json(mutator.to_record()))
            if FLOAT_TEXT_INEXACT and may_hold_float(body):
                # Apply what the journal holds: recovery rebuilds the mutator from these
                # bytes, and this runtime may parse a float back 1 ulp away.
                mutator = self._decode(self.seq + len(bodies) + 1, shim.loads(body))
            todo.append(mutator)
            bodies.append(body)
            size += len(body)
        if not bodies:
            return self.seq
        due = self._snapshot_due(len(bodies), size)
        state_json = None
        # Apply first, journal second: a mutator that raises is never journaled.
        # It may have changed the state halfway, so the state is rebuilt from disk.
        try:
            for mutator in todo:
                mutator.apply(self._state)
            if due:
                # The snapshot this commit triggers must be storable before the
                # mutation is made durable: afterwards, raising would be a lie.
                state_json = settle(encode_json(self._state))
        except BaseException:
            self._rebuild()
            raise
        try:
            seq = log._append_encoded(bodies)
        except BaseException:
            # The state in memory is ahead of the journal; only a reopen is trustworthy.
            self._close_quietly()
            raise
        self._since_snapshot += len(bodies)
        if due:
            self._snapshot(state_json)
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
        return self._snapshot(None)

    def _snapshot(self, state_json):
        log = self._open_log()
        log.sync()  # a snapshot must never be ahead of the durable journal
        seq = log.seq
        if FLOAT_TEXT_INEXACT:
            # The live state becomes what this snapshot restores to (its floats parsed back).
            if state_json is None:
                state_json = settle(encode_json(self._state))
            self._state = shim.loads(state_json)
        self._snaps.create(self._state, seq, state_json)
        log.roll()
        log.compact(self._snaps.oldest_seq())
        self.snapshot_seq = seq
        self._since_snapshot = 0
        return seq
