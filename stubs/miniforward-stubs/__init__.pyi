# Type stubs for miniforward (shared/miniforward.py): see stubs/README.md.
# The _names are stub-only types (no such names at run time), shared between these stubs.
# pyright: reportPrivateUsage=false
from typing import Any, Iterable, Protocol

from miniqueue import MiniQueue
from ministore import MiniError

# What Forwarder drives: UmqttTransport, minitools.forward_paho.PahoTransport, or your own.
# Each method raises LinkDown (and nothing else) when the link fails; poll() returns the
# (topic, payload) messages received since the last call.
class _Transport(Protocol):
    def connect(self) -> object: ...
    def subscribe(self, topic: str, /) -> object: ...
    def publish(self, topic: str, payload: bytes, /) -> object: ...
    def poll(self) -> Iterable[tuple[object, bytes | str]]: ...
    def close(self) -> object: ...

IDENTITY_FILE: str
WIRE_VERSION: int

class LinkDown(OSError): ...
class IdentityError(MiniError): ...

def check_device(device: str) -> str: ...
def incarnation(directory: str) -> str: ...

class Forwarder:
    queue: MiniQueue
    device: str
    incarnation: str
    up_topic: str
    ack_topic: str
    batch: int
    window: int
    max_payload: int
    resend_ms: int
    retry_ms: int
    max_retry_ms: int
    connected: bool
    sent: int
    resent: int
    confirmed: int
    connects: int
    failures: int
    last_error: LinkDown | None
    def __init__(self, queue: MiniQueue, transport: _Transport, device: str, prefix: str = "mini", batch: int = 1,
                 window: int = 4, max_payload: int = 16384, resend_ms: int = 10000, retry_ms: int = 500,
                 max_retry_ms: int = 30000) -> None: ...
    def pending(self) -> int: ...
    def idle(self) -> bool: ...
    def pump(self) -> int: ...
    def flush(self, timeout_ms: int = 30000, step_ms: int = 5) -> bool: ...
    def close(self) -> None: ...

class UmqttTransport:
    server: str
    port: int
    client_id: str | None
    user: str | None
    password: str | None
    ssl: Any
    keepalive: int
    timeout: float
    def __init__(self, server: str, port: int = 0, client_id: str | None = None, user: str | None = None,
                 password: str | None = None, ssl: Any = None, keepalive: int = 60, timeout: float = 5) -> None: ...
    def connect(self) -> None: ...
    def subscribe(self, topic: str) -> None: ...
    def publish(self, topic: str, payload: bytes) -> None: ...
    def poll(self) -> list[tuple[bytes, bytes]]: ...
    def close(self) -> None: ...
