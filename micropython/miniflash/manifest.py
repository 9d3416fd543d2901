# Written by micropython/bricks.py from the imports in shared/miniflash.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/miniflash/manifest.py").
include("../miniregion/manifest.py")
include("../minishim/manifest.py")
include("../ministore/manifest.py")
module("miniflash.py", base_path="../../shared")
