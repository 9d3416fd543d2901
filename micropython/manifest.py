# Written by micropython/bricks.py: every core module. Freeze them all with
#     include("<repo>/micropython/manifest.py")
# or one brick and what it needs with micropython/<brick>/manifest.py.
metadata(description="mini: crash-safe storage bricks (WAL, log, snapshots, state, queue)", version="0.1.0")
include("miniflash/manifest.py")
include("miniflashlog/manifest.py")
include("miniforward/manifest.py")
include("minilog/manifest.py")
include("miniqueue/manifest.py")
include("minishim/manifest.py")
include("minisnap/manifest.py")
include("ministate/manifest.py")
include("ministore/manifest.py")
include("miniwait/manifest.py")
