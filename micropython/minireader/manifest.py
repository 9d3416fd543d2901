# Written by micropython/bricks.py from the imports in shared/minireader.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/minireader/manifest.py").
include("../miniformat/manifest.py")
include("../minishim/manifest.py")
module("minireader.py", base_path="../../shared")
