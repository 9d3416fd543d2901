# Written by micropython/bricks.py from the imports in shared/ministate.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/ministate/manifest.py").
include("../minilog/manifest.py")
include("../minishim/manifest.py")
include("../minisnap/manifest.py")
include("../ministore/manifest.py")
module("ministate.py", base_path="../../shared")
