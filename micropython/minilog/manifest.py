# Written by micropython/bricks.py from the imports in shared/minilog.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/minilog/manifest.py").
include("../minishim/manifest.py")
include("../ministore/manifest.py")
module("minilog.py", base_path="../../shared")
