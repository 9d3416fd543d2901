# Records that both runtimes write and read in tests/test_cross_runtime.py.
RECORDS = [
    {"Set": {"value": 42}},
    {"text": "caf\u00e9 \u2603 \u65e5\u672c\u8a9e \U0001f600", "esc": "tab\tnl\nq\"bs\\ctl\x07"},
    {"floats": [0.1, 1 / 3, -2.5e-300, 1.7976931348623157e308, 5e-324, 123456.789, -0.0, 1.0]},
    {"ints": [0, -7, 2 ** 53 + 1, -(2 ** 70)]},
    [True, False, None, "", [], {}],
]
BATCH = [{"Inc": {"by": i}} for i in range(5)]


def write(path):
    from ministore import MiniStore
    with MiniStore.open(path) as store:
        for record in RECORDS:
            store.append(record)
        store.append_many(BATCH)


def check(path):
    from ministore import MiniStore
    got = MiniStore.replay(path)
    want = RECORDS + BATCH
    assert got == want, (got, want)
    assert got.torn is None
    for a, b in zip(got[2]["floats"], want[2]["floats"]):
        assert repr(a) == repr(b), (a, b)
    return "checked %d records" % len(got)
