# may_hold_float() decides which bodies settle() parses again on MicroPython: it must say
# True for every body with a float in it (a digit just before "." or "e"). It scans for
# the marks instead of keeping a table of the 20 digit-mark pairs (issue 14: heap).
from ministore import encode_json, may_hold_float


def _by_definition(body):
    for i in range(1, len(body)):
        if body[i] in b".e" and 48 <= body[i - 1] <= 57:
            return True
    return False


def test_may_hold_float_is_true_exactly_when_a_digit_comes_before_a_dot_or_an_e():
    alphabet = b'0123456789.e"{}:,aE-'
    seed = 12345
    for _ in range(3000):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        length = seed % 9
        body = b""
        for _ in range(length):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            body += alphabet[seed % len(alphabet):seed % len(alphabet) + 1]
        assert may_hold_float(body) == _by_definition(body), body


def test_every_encoded_float_is_seen_and_text_alone_is_not():
    for value in (0.5, -1.25, 1e-30, 3.0e20, [1, {"k": 2.5}], {"e": "e.e", "x": 1.0}):
        assert may_hold_float(encode_json(value)), value
    for value in ({"key": "e.", "seq": [1, 2]}, "1", ".e", [10, "e"]):
        assert not may_hold_float(encode_json(value)), value
