"""File names that a device or a flash image reports, checked before the host writes anything.

A device with tampered firmware, or a crafted flash dump, is less trusted than the
host: the names it lists must not make `mini pull` or `mini image extract` write
outside the destination folder. A name is accepted only when it is a relative path
of plain components: not empty, not absolute, no `.` or `..` component, no empty
component (`a//b`), no backslash (a separator on Windows), no NUL or other control
character (C0, DEL, C1), and, once joined onto the destination, it still resolves
(realpath, so through any symlink already there) inside the destination.

The callers check a whole listing first and write only if every name passes: a bad
name means that nothing at all is written.
"""
import os
import unicodedata


class UnsafeName(ValueError):
    """A name from a device or an image that the host refuses to write; says which and why."""


def _why_bad(name):
    """The reason a relative path from a device is refused, or None if it is acceptable."""
    if not isinstance(name, str):
        return "not a string"
    if name == "":
        return "empty name"
    for ch in name:
        if ch == "\x00":
            return "contains a NUL character"
        if unicodedata.category(ch) == "Cc":
            return "contains the control character U+%04X" % ord(ch)
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "absolute path"
    for part in name.split("/"):
        if part == "..":
            return "has a '..' component"
        if part == ".":
            return "has a '.' component"
        if part == "":
            return "has an empty component"
    return None


def check_name(name, source):
    """Raise UnsafeName if name (a relative path with '/' separators) may not be written."""
    why = _why_bad(name)
    if why is not None:
        raise UnsafeName("%s reported the file name %s: %s; refusing it, nothing was written"
                         % (source, _show(name), why))


def _show(name):
    return ascii(name) if isinstance(name, str) else repr(name)


def inside(destination, name, source):
    """The host path of name under destination, after checking that it resolves inside it."""
    check_name(name, source)
    root = os.path.realpath(destination)
    target = os.path.realpath(os.path.join(root, *name.split("/")))
    if os.path.commonpath([root, target]) != root or target == root:
        raise UnsafeName("%s reported the file name %s: it resolves to %s, outside %s (a symlink?); "
                         "refusing it, nothing was written" % (source, _show(name), target, root))
    return target


def check_listing(destination, names, source):
    """Check every name of a listing (files and directories) before anything is written.

    Also refuses a name listed twice: the copy would not be what the device holds.
    """
    seen = set()
    for name in names:
        inside(destination, name, source)
        if name in seen:
            raise UnsafeName("%s listed %s twice; refusing the listing, nothing was written"
                             % (source, _show(name)))
        seen.add(name)
    return names
