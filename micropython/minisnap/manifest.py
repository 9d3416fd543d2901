# Written by micropython/bricks.py from the imports in shared/minisnap.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/minisnap/manifest.py").
include("../minidamage/manifest.py")
include("../minishim/manifest.py")
include("../minisnapio/manifest.py")
include("../ministore/manifest.py")
module("minisnap.py", base_path="../../shared")
