# Written by micropython/bricks.py from the imports in shared/miniforward.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/miniforward/manifest.py").
include("../miniqueue/manifest.py")
include("../minishim/manifest.py")
include("../ministore/manifest.py")
module("miniforward.py", base_path="../../shared")
