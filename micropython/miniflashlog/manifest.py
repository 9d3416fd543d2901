# Written by micropython/bricks.py from the imports in shared/miniflashlog.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/miniflashlog/manifest.py").
include("../miniflash/manifest.py")
include("../minilog/manifest.py")
include("../minishim/manifest.py")
include("../ministore/manifest.py")
module("miniflashlog.py", base_path="../../shared")
