# Lets pytest import the core from the source tree even before `pip install .`.
import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
for sub in ("shared", "cpython", "tests/core", "tests", "tests/crash"):
    path = os.path.join(ROOT, sub)
    if path not in sys.path:
        sys.path.insert(0, path)
