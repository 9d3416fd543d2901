# The virtual board (boards/virtual), installed as the package `miniboard`:
# board.py is the `mini-board` command; vboot.py and flashfile.py run on MicroPython.
