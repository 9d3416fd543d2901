# Written by micropython/bricks.py from the imports in shared/miniformat.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/miniformat/manifest.py").
include("../minidamage/manifest.py")
include("../minishim/manifest.py")
module("miniformat.py", base_path="../../shared")
