# Written by micropython/bricks.py from the imports in shared/minimessages.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/minimessages/manifest.py").
include("../minilog/manifest.py")
include("../minishim/manifest.py")
include("../ministore/manifest.py")
module("minimessages.py", base_path="../../shared")
