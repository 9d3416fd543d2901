# Written by micropython/bricks.py from the imports in shared/miniregion.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/miniregion/manifest.py").
include("../minishim/manifest.py")
include("../ministore/manifest.py")
module("miniregion.py", base_path="../../shared")
