"""The core modules and what each one needs, read from the code itself: each
module's `import mini...` lines. Nothing lists the bricks by hand; this writes
every per-brick file from those imports.

    python3 micropython/bricks.py          write micropython/<module>/{package.json,manifest.py}
    python3 micropython/bricks.py --check  exit 1 if any of them is out of date

tests/test_packaging.py runs --check, and imports each module on MicroPython with
only the modules this says it needs.
"""
import json
import os
import re
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(TOP, "shared")
HERE = os.path.join(TOP, "micropython")
VERSION = "0.1.0"
# Imports at the top of a module, and those inside a function marked "# lazy": loaded
# only when needed, but needed (miniformat imports minidamage for a damaged or long
# line). Any other import inside a function is optional (ministore imports miniflash
# only when it is handed a flash region).
_IMPORT = re.compile(r"^(?:import|from)\s+(mini\w+)|^[ \t]+(?:import|from)\s+(mini\w+)[^\n#]*#\s*lazy\b", re.M)


# What a module is used with though it does not import it: miniforward forwards a
# MiniQueue's messages (the app makes the queue), minireport is the reporter mode of
# the journal reader (minireader imports it, only when a reporter is given).
_USED_WITH = {"miniforward": ["miniqueue"], "minireport": ["ministore"]}


def core_modules():
    """Every module of the core: shared/*.py, sorted."""
    return sorted(name[:-3] for name in os.listdir(SHARED) if name.endswith(".py"))


def direct_deps(name, used_with=True):
    """The core modules that `name` imports at its top (what it cannot import without),
    and (used_with) those it is used with though it does not import them."""
    with open(os.path.join(SHARED, name + ".py")) as f:
        found = set(name for pair in _IMPORT.findall(f.read()) for name in pair if name)
    core = set(core_modules())
    return sorted((found | set(_USED_WITH.get(name, ()) if used_with else ())) & core - {name})


def loaded_on_demand():
    """The core modules that no module imports at its top: only "# lazy" imports load
    them, so importing a module does not load them yet (they are in its closure all the
    same, as the code needs them when it meets what they handle)."""
    top = re.compile(r"^(?:import|from)\s+(mini\w+)", re.M)
    at_top = set()
    for module in core_modules():
        with open(os.path.join(SHARED, module + ".py")) as f:
            at_top |= set(top.findall(f.read()))
    lazy = set()
    for module in core_modules():
        lazy |= set(direct_deps(module, used_with=False))
    return lazy - at_top


def closure(name, used_with=True):
    """`name` and everything it needs, dependencies first (used_with=False: only what
    its imports load)."""
    out = []

    def visit(module):
        if module in out:
            return
        for dep in direct_deps(module, used_with):
            visit(dep)
        out.append(module)
    visit(name)
    return out


def package_json(names):
    urls = []
    for module in names:
        urls.append([module + ".py", "../../shared/%s.py" % module])
    return json.dumps({"urls": urls, "version": VERSION}, indent=2) + "\n"


def manifest(name):
    lines = ["# Written by micropython/bricks.py from the imports in shared/%s.py: do not edit." % name,
             "# Freeze this module and what it needs: include(\"<repo>/micropython/%s/manifest.py\")." % name]
    for dep in direct_deps(name):
        lines.append('include("../%s/manifest.py")' % dep)
    lines.append('module("%s.py", base_path="../../shared")' % name)
    return "\n".join(lines) + "\n"


def all_manifest():
    lines = ["# Written by micropython/bricks.py: every core module. Freeze them all with",
             '#     include("<repo>/micropython/manifest.py")',
             "# or one brick and what it needs with micropython/<brick>/manifest.py.",
             'metadata(description="mini: crash-safe storage bricks (WAL, log, snapshots, state, queue)", '
             'version="%s")' % VERSION]
    for name in core_modules():
        lines.append('include("%s/manifest.py")' % name)
    return "\n".join(lines) + "\n"


def wanted():
    """{path: text} of every generated file."""
    files = {os.path.join(HERE, "manifest.py"): all_manifest(),
             os.path.join(HERE, "mini", "package.json"): package_json(core_modules())}
    for name in core_modules():
        files[os.path.join(HERE, name, "package.json")] = package_json(closure(name))
        files[os.path.join(HERE, name, "manifest.py")] = manifest(name)
    return files


def main(argv):
    stale = []
    for path, text in sorted(wanted().items()):
        current = open(path).read() if os.path.exists(path) else None
        if current == text:
            continue
        stale.append(os.path.relpath(path, TOP))
        if "--check" not in argv:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
    if "--check" in argv and stale:
        print("out of date (run python3 micropython/bricks.py): " + ", ".join(stale))
        return 1
    for path in stale:
        print("wrote " + path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
