# miniforward tests that need no broker, on CPython (pytest) and MicroPython
# (tests/mp/runner.py). The forwarding itself, against real mosquitto and paho,
# is in tests/test_forward*.py.
from support import scratch, raises
import minishim
from ministore import MiniStore
from miniqueue import MiniQueue
from miniforward import Forwarder, LinkDown, IdentityError, incarnation, check_device, IDENTITY_FILE


class NoNetwork:
    """A transport whose link is always down (the broker is unreachable)."""

    def __init__(self):
        self.attempts = 0

    def connect(self):
        self.attempts += 1
        raise LinkDown("unreachable")

    def close(self):
        pass


def test_incarnation_is_made_once_and_kept():
    d = scratch()
    q = MiniQueue.open(d)
    first = incarnation(d)
    assert len(first) == 16 and int(first, 16) >= 0
    assert incarnation(d) == first
    q.close()
    q = MiniQueue.open(d)
    assert incarnation(d) == first  # across a reopen (a reboot)
    q.close()
    assert incarnation(scratch()) != first  # a queue made anew is a new incarnation


def test_incarnation_file_without_one_is_refused_and_kept():
    d = scratch()
    minishim.makedirs(d)
    path = minishim.join(d, IDENTITY_FILE)
    with MiniStore.open(path) as store:
        store.append({"something": "else"})
    raises(IdentityError, incarnation, d)
    assert MiniStore.replay(path) == [{"something": "else"}]  # not changed


def test_device_ids():
    assert check_device("dev-1_a.b") == "dev-1_a.b"
    for bad in ("", "a/b", "+", "#", "a b", ".x", "x" * 65, 7, "é"):
        raises(ValueError, check_device, bad)


def test_puts_keep_working_while_the_network_is_down():
    d = scratch()
    q = MiniQueue.open(d, max_bytes=4096)
    link = NoNetwork()
    fw = Forwarder(q, link, "dev1", retry_ms=0, max_retry_ms=0)
    for i in range(20):
        q.put({"i": i})
        assert fw.pump() == 0
    assert link.attempts == 20 and not fw.connected and fw.failures == 20
    assert len(q) == 20 and q.in_flight() == 0 and fw.pending() == 0  # nothing taken while down
    fw.close()
    q.close()


def test_batches_respect_size_and_order():
    d = scratch()
    q = MiniQueue.open(d)
    for i in range(10):
        q.put({"i": i, "pad": "x" * 20})
    fw = Forwarder(q, NoNetwork(), "dev1", batch=4, max_payload=160)
    batches = []
    while True:
        batch = fw._take()
        if batch is None:
            break
        batches.append(batch)
        assert len(batch[1]) <= 160 or len(batch[0]) == 1
    ids = [mid for b in batches for mid in b[0]]
    assert ids == sorted(ids) and len(ids) == 10 and max(len(b[0]) for b in batches) <= 4
    assert len(batches) > 3  # the byte bound cut some batches short
    import json
    body = json.loads(batches[0][1].decode())
    assert body["d"] == "dev1" and body["i"] == fw.incarnation and body["n"] == 10 - len(batches[0][0])
    assert [m[0] for m in body["m"]] == batches[0][0]
    q.close()


def _batches(fw):
    out = []
    while True:
        batch = fw._take()
        if batch is None:
            return out
        out.append(batch[0])


def test_a_batch_boundary_neither_counts_a_delivery_nor_reorders():
    # _take() used to get the message that did not fit and nack it back: with a retry
    # delay that message was held back while later ones went out (ids out of order
    # across batches, which the ingester accepted), and each nack counted a delivery.
    d = scratch()
    q = MiniQueue.open(d, retry_delay=5)
    for i in range(6):
        q.put({"i": i, "pad": "x" * 40})
    fw = Forwarder(q, NoNetwork(), "dev1", batch=3, max_payload=200)
    taken = _batches(fw)
    assert [mid for ids in taken for mid in ids] == [1, 2, 3, 4, 5, 6] and len(taken) > 2, taken
    assert len(q.dead()) == 0
    q.close()


def test_a_queue_with_max_deliveries_is_refused():
    d = scratch()
    q = MiniQueue.open(d, max_deliveries=3)
    raises(ValueError, Forwarder, q, NoNetwork(), "dev1")
    q.close()


def test_a_message_over_max_payload_goes_to_the_dead_letters_and_holds_back_nothing():
    d = scratch()
    q = MiniQueue.open(d)
    q.put({"small": 1})
    big = q.put({"blob": "x" * 400})
    q.put({"small": 2})
    fw = Forwarder(q, NoNetwork(), "dev1", batch=1, max_payload=300)
    assert _batches(fw) == [[1], [3]]
    assert fw.oversize == 1 and "over max_payload" in str(fw.last_error)
    assert [entry[0] for entry in q.dead()] == [big]  # kept, not sent and not lost
    q.close()


def test_a_malformed_ack_is_ignored():
    d = scratch()
    q = MiniQueue.open(d)
    q.put({"a": 1})
    fw = Forwarder(q, NoNetwork(), "dev1")
    batch = fw._take()
    fw._batches.append(batch)
    for mid in batch[0]:
        fw._waiting[mid] = batch
    inc = fw.incarnation
    for bad in (b'{"i":"%s","ids":5}' % inc.encode(), b'{"i":"%s","ids":[true]}' % inc.encode(),
                b'{"i":"%s","ids":"1"}' % inc.encode(), b'[1]', b'{"ids":[1]}'):
        assert fw._on_ack(bad) == 0
    assert fw.pending() == 1 and q.in_flight() == 1  # message 1 still awaits its real ack
    assert fw._on_ack(b'{"i":"%s","ids":[1]}' % inc.encode()) == 1 and len(q) == 0 and q.in_flight() == 0
    q.close()
