# Written by micropython/bricks.py from the imports in shared/ministore.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/ministore/manifest.py").
include("../miniformat/manifest.py")
include("../minireader/manifest.py")
include("../minishim/manifest.py")
module("ministore.py", base_path="../../shared")
