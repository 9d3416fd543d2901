"""Host-side (CPython-only) tools for the mini bricks: the `mini` command."""
