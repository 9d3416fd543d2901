# Freeze the mini bricks into a firmware image. In your board's manifest.py:
#
#     include("/path/to/mini/micropython/manifest.py")
#
# or, to freeze only some bricks, copy the module() lines you need (each brick
# needs minishim and the bricks it builds on; see README.md in this folder).
metadata(description="mini: crash-safe storage bricks (WAL, snapshots, state, queue)", version="0.1.0")

module("minishim.py", base_path="../shared")
module("ministore.py", base_path="../shared")
module("minisnap.py", base_path="../shared")
module("ministate.py", base_path="../shared")
module("miniqueue.py", base_path="../shared")
module("miniflash.py", base_path="../shared")
module("miniflashlog.py", base_path="../shared")
