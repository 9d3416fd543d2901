# Written by micropython/bricks.py from the imports in shared/miniqueue.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/miniqueue/manifest.py").
include("../minilog/manifest.py")
include("../minimessages/manifest.py")
include("../minishim/manifest.py")
include("../ministore/manifest.py")
include("../miniwait/manifest.py")
module("miniqueue.py", base_path="../../shared")
