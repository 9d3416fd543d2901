# Written by micropython/bricks.py from the imports in shared/minireport.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/minireport/manifest.py").
include("../miniformat/manifest.py")
include("../ministore/manifest.py")
module("minireport.py", base_path="../../shared")
