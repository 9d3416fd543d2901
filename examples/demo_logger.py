# The demo's sensor logger. It runs unchanged on CPython and on MicroPython.
#   python3     examples/demo_logger.py log    JOURNAL
#   micropython examples/demo_logger.py log    JOURNAL IMAGE   (JOURNAL inside a LittleFS image)
#   ...         examples/demo_logger.py recover JOURNAL [IMAGE]
# "log" appends readings for ever and prints "ack SEQ" after each append returns
# (the record is durable by then). "recover" reopens the journal, which cuts a
# torn tail if the crash left one, and prints what survived as JSON lines.
import sys

top = __file__.rsplit("/", 2)[0] if __file__.count("/") >= 2 else ".."
sys.path.insert(0, top + "/shared")
sys.path.insert(0, top + "/boards/virtual")

from ministore import MiniStore  # noqa: E402
import minishim  # noqa: E402


def main(argv):
    mode, journal = argv[1], argv[2]
    if len(argv) > 3:
        import flashfile
        flashfile.mount(argv[3], "esp32", "/flash", format_if_blank=True)
        journal = "/flash/" + journal
    if mode == "log":
        with MiniStore.open(journal) as store:
            reading = store.seq
            while True:
                reading += 1
                seq = store.append({"reading": reading, "temp_c": 20.0 + (reading % 17) * 0.25,
                                    "sensor": "caf\u00e9-terrasse"})
                print("ack", seq)
    else:
        torn = MiniStore.replay(journal).torn
        with MiniStore.open(journal) as store:  # opening for writing cuts the torn tail
            last = store.seq
        print("last_seq", last)
        if torn is not None:
            print("torn_tail %d bytes at offset %d (%s): cut" % (torn.length, torn.offset, torn.reason))
        for seq, record in MiniStore.stream(journal, from_seq=max(1, last - 1)):
            print("record", seq, minishim.dumps(record))


main(sys.argv)
