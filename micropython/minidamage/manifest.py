# Written by micropython/bricks.py from the imports in shared/minidamage.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/minidamage/manifest.py").
include("../minishim/manifest.py")
module("minidamage.py", base_path="../../shared")
