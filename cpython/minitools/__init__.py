"""Host-side (CPython-only) tools for the mini bricks: the `mini` command."""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (dynamic version), `mini --version` prints it
