# Type stubs for ministore (shared/ministore.py), shipped as the stub-only package
# ministore-stubs (PEP 561): see stubs/README.md. tests/test_user_types.py checks
# every name and parameter here against the module.
# The _names are stub-only types (no such names at run time), shared between these stubs.
# pyright: reportPrivateUsage=false
import os
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Protocol, Sequence, overload

from typing_extensions import Self, TypeAlias, TypeGuard

from miniflash import FlashReader, FlashStore, Region, _BlockDevice

# What the bricks store: a value JSON reads back exactly. The top level is checked here
# (no tuple, bytes, set or object); what is inside a list or dict is checked at run time
# (TypeError/ValueError before anything is written), so a list[float] or a dict[str, int]
# passes without casts. A dict is a Mapping here only so that a TypedDict passes: a
# Mapping that is not a dict is refused at run time.
_JSONIn: TypeAlias = None | bool | int | float | str | list[Any] | Mapping[str, Any]
# A path: a str, or on CPython any path-like object (pathlib.Path).
_StrPath: TypeAlias = str | os.PathLike[str]
_Sync: TypeAlias = Literal["always"] | int
_Replayer: TypeAlias = Callable[[int, Any], object]

class _Reporter(Protocol):
    def report(self, kind: str, line: int, offset: int, length: int, reason: str,
               lost: tuple[int, int] | None, /) -> object: ...

FORMAT_NAME: str
FORMAT_VERSION: int
MAX_DEPTH: int
MAX_LINE: int
FLOAT_TEXT_INEXACT: bool
HEADER: int
RECORD: int
PAD: int
FOREIGN: int
SYNC_POINT: bytes
SYNC_ALWAYS: bytes

class MiniError(Exception): ...

class CorruptRecord(MiniError):
    path: str
    line: int
    offset: int
    reason: str
    def __init__(self, path: str, line: int, offset: int, reason: str) -> None: ...

class FormatError(MiniError): ...
class LockedError(MiniError): ...
class ClosedError(MiniError): ...

class TornTail:
    offset: int
    length: int
    line: int
    reason: str
    intact: list[int]
    def __init__(self, offset: int, length: int, line: int, reason: str, intact: Iterable[int] = ()) -> None: ...

def check_value(value: object, depth: int = 0) -> None: ...
def encode_json(value: _JSONIn, depth: int = 0) -> bytes: ...
def is_int(value: object) -> TypeGuard[int]: ...
def length_of(data: bytes | bytearray | memoryview | list[bytes]) -> int: ...

class JournalReader:
    path: str
    from_seq: int
    reporter: _Reporter | None
    batches: int
    torn: TornTail | None
    pads: int
    unsynced: bool
    lost: list[tuple[int, int]]
    base_seq: int | None
    seq: int | None
    size: int
    def __init__(self, path: _StrPath, from_seq: int = 0, reporter: _Reporter | None = None,
                 fast: bool = True) -> None: ...
    def __iter__(self) -> Iterator[tuple[int, Any]]: ...
    def __next__(self) -> tuple[int, Any]: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...
    def close(self) -> None: ...
    @staticmethod
    def pushed(name: str, reporter: _Reporter, mid_file: bool = False) -> JournalReader: ...
    def push(self, line: bytes) -> list[tuple[int, Any]]: ...
    @property
    def lines(self) -> int: ...

class Replay(list[Any]):
    torn: TornTail | None
    seq: int | None

class MiniStore:
    path: str
    sync_every: int | None
    seq: int
    durable_seq: int
    size: int
    def __init__(self, path: str, sync: int | None, journal_file: Any, seq: int, size: int) -> None: ...
    @overload
    @staticmethod
    def open(path: _StrPath, sync: _Sync = "always", base_seq: int = 0,
             replay: _Replayer | None = None) -> MiniStore: ...
    @overload
    @staticmethod
    def open(path: Region | _BlockDevice, sync: _Sync = "always", base_seq: int = 0,
             replay: _Replayer | None = None) -> FlashStore: ...
    @overload
    @staticmethod
    def stream(path: _StrPath, from_seq: int = 0) -> JournalReader: ...
    @overload
    @staticmethod
    def stream(path: Region | _BlockDevice, from_seq: int = 0) -> FlashReader: ...
    @staticmethod
    def replay(path: _StrPath | Region | _BlockDevice, from_seq: int = 0) -> Replay: ...
    def append(self, record: _JSONIn) -> int: ...
    def append_many(self, records: Iterable[_JSONIn]) -> int: ...
    def append_encoded(self, bodies: Sequence[bytes], durable: bool = True,
                       lead: Sequence[Sequence[bytes]] = (), waits: bool = False) -> int: ...
    def sync(self) -> None: ...
    def wait_durable(self, seq: int) -> None: ...
    def refresh(self) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...
