# Written by micropython/bricks.py from the imports in shared/minishim.py: do not edit.
# Freeze this module and what it needs: include("<repo>/micropython/minishim/manifest.py").
module("minishim.py", base_path="../../shared")
