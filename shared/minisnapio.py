"""minisnapio: snapshots encoded, written and read a piece at a time (MicroPython).

minisnap loads it at the first snapshot on MicroPython. A board's heap is fragmented by
the app's own long-lived objects (a 100-key state's keys, made between collections, lay
about 800 bytes apart on a 96 KB heap, with a largest free block of 1 KB in 58 KB free),
so it may have no free block as large as a state's JSON. The bytes are those of
FORMAT.md section 3 on every runtime.
"""
import minishim as shim
from miniformat import check_value, encode_json, may_hold_float, settle, FLOAT_TEXT_INEXACT, _CRC_TAG, _SUFFIX_LEN

_RUN = 512  # bytes of members joined into one piece


def encode_state(state, settle_floats, in_pieces):
    """minisnap.encode_state(). in_pieces: a dict or list state is encoded member by
    member and the members joined in runs of about _RUN bytes, so no piece is longer
    than that or than one member.
    settle_floats: a member whose text holds a float is replaced, in `state`, by what that
    text parses back to (settle()), so the state is what its snapshot restores to; a
    state that is not a dict or list comes back as a new object. Without it, a float
    that does not read back exactly is refused (ValueError).
    """
    if not (in_pieces and isinstance(state, (dict, list))):
        body = encode_json(state)
        if FLOAT_TEXT_INEXACT and may_hold_float(body):
            state, body = _read_back(state, body, settle_floats)
        return state, [body]
    is_dict = isinstance(state, dict)
    pieces = []
    settled = []  # (key, value): put in `state` once every member is stored, or none is
    run = [b"{" if is_dict else b"["]
    size = 1
    for at, key in enumerate(state):
        if is_dict:
            if not isinstance(key, str):
                raise TypeError("JSON object keys must be str, not %s" % type(key).__name__)
            value = state[key]
            head = b"%s%s:" % (b"," if at else b"", shim.dumps(key).encode())
        else:
            value, key = key, at
            head = b"," if at else b""
        # encode_json(value, 1) without its frame: this loop stands for the state's own
        # check_value() frame, so a state nested past MAX_DEPTH meets the ValueError at
        # the same C stack depth as before (on a 10 KB stack it has little to spare).
        check_value(value, 1)
        body = shim.dumps(value).encode()
        if FLOAT_TEXT_INEXACT and may_hold_float(body):
            value, body = _read_back(value, body, settle_floats)
            if settle_floats:
                settled.append((key, value))
        run.append(head)
        size += len(head)
        if len(body) < _RUN:
            run.append(body)
            size += len(body)
        if size >= _RUN or len(body) >= _RUN:
            pieces.append(b"".join(run))
            run, size = [], 0
            if len(body) >= _RUN:
                pieces.append(body)
    run.append(b"}" if is_dict else b"]")
    pieces.append(b"".join(run))
    for key, value in settled:
        state[key] = value
    return state, pieces


def _read_back(value, body, settle_floats):
    """(value, body) as restore() gives them back: settled, or refused if they differ."""
    if settle_floats:
        body = settle(body)
        return shim.loads(body), body
    if shim.loads(body) != value:
        # restore() would not give back this state (StateManager settles its state first).
        raise ValueError("the state holds a float that this runtime does not "
                         "read back exactly; store it as an int or a string")
    return value, body


def read_sealed(path):
    """The JSON object of a snapshot file that is one line with a matching CRC field, read
    without holding the file: its CRC checked _RUN bytes at a time, then parsed from the
    file. None for anything else."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        crc = 0
        left = size - _SUFFIX_LEN
        while left > 0:
            chunk = f.read(min(left, _RUN))
            if not chunk or b"\n" in chunk:
                return None
            crc = shim.crc32(chunk, crc)
            left -= len(chunk)
        tail = f.read()
        if left < 0 or tail != b'%s%08x"}\n' % (_CRC_TAG, crc & 0xFFFFFFFF):
            return None
        f.seek(0)
        try:
            obj = shim.json.load(f) if shim.MICROPYTHON else shim.loads(f.read())
        except (ValueError, RuntimeError):  # RuntimeError: nested too deep for this runtime
            return None
    # The rest, read whole, gets parse_line()'s verdict.
    return obj if isinstance(obj, dict) and ("format" in obj or "seq" in obj or "pad" in obj) else None
