# The common start of bench/mp_*.py (MicroPython): puts tests/mp (the RAM block
# device) and the core on sys.path. The core is shared/, or a candidate copy given
# as --shared=DIR. Returns the core's directory and the other arguments.
import sys


def setup():
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    top = here + "/.."
    shared = top + "/shared"
    args = []
    for arg in sys.argv[1:]:
        if arg.startswith("--shared="):
            shared = arg[len("--shared="):]
        else:
            args.append(arg)
    sys.path.insert(0, top + "/tests/mp")
    sys.path.insert(0, shared)
    return shared, args
