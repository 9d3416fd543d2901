# Written by micropython/bricks.py from the imports in shared/minisnapio.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/minisnapio/manifest.py").
include("../miniformat/manifest.py")
include("../minishim/manifest.py")
module("minisnapio.py", base_path="../../shared")
