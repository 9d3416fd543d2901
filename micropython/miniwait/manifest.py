# Written by micropython/bricks.py from the imports in shared/miniwait.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/miniwait/manifest.py").
include("../minishim/manifest.py")
module("miniwait.py", base_path="../../shared")
