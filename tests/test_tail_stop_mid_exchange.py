# `mini tail --follow --resume` stopped (SIGTERM, Ctrl-C) in the middle of a poll's exchange
# must not leave the board's app stopped. Seen under load: the SIGTERM landed while mpremote
# was sending the poll's code in raw-paste mode; the session's Ctrl-B and then the bytes of
# the restart ("\r\x02\x04") were taken as more of the pasted code, its Ctrl-D ended the paste,
# and the board sat in the raw REPL with main.py stopped. Here the poll stops at that very
# point, deterministically: the board (real), mpremote's transport (real), tail's Poller (real);
# only the moment of the signal is chosen by the test.
from minitools.tail import Poller

from test_tail_running_app import APP, _runs_on, counts
from test_virtual_board import VirtualBoard


class StoppedInRawPaste:
    """A follower whose poll is interrupted once the board has entered raw-paste mode."""

    def poll(self, evaluate):
        transport = evaluate.__self__.transport
        transport.read_until(1, b">")  # the raw REPL's prompt, as mpremote's exec reads it
        serial = transport.serial
        serial.write(b"\x05A\x01")  # what mpremote's exec sends first: raw-paste mode, please
        assert serial.read(2) == b"R\x01"  # the board waits for the code now
        raise KeyboardInterrupt  # what tail's SIGTERM handler raises


def _board(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(APP)
    board = VirtualBoard(tmp_path / "flash.bin", "esp32")
    address = board.start("--preload", "--main", str(app), "--size-kb", "512")
    board.wait_console(b"count 5")
    return board, address


def test_tail_stopped_in_raw_paste_leaves_the_app_running(tmp_path):
    board, address = _board(tmp_path)
    try:
        poller = Poller(address, resume=True)
        try:
            poller.poll(StoppedInRawPaste())
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("the poll was not interrupted")
        poller.leave()
        _runs_on(board, counts(board)[-1])
    finally:
        board.stop(power_cut=True)
