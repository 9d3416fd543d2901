# Issue 12.5: the host does not trust the names a device or a flash image reports.
# `mini pull` and `mini image extract` check every name (minitools/safenames.py)
# before they write anything: no absolute path, no '.' or '..' component, no NUL or
# control character, no backslash, nothing that resolves outside the destination
# (through a symlink already there). One bad name: exit 2, one line naming it, and
# nothing written at all. Tested with crafted LittleFS images (tests/crafted_image.py)
# and with a virtual board whose listing is tampered by its boot.py, or whose LittleFS
# holds real odd names.
import os
import sys

import pytest

from minitools import safenames

from crafted_image import crafted_image
from test_virtual_board import VirtualBoard, mini, mpremote

HERE = os.path.dirname(os.path.abspath(__file__))


def tree(path):
    """Every path under path (files, directories, symlinks), relative, sorted."""
    found = []
    for root, dirs, names in os.walk(path):
        for name in dirs + names:
            found.append(os.path.relpath(os.path.join(root, name), path))
    return sorted(found)


def refused(code, err, *words):
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "nothing was written" in err, err
    for word in words:
        assert word in err, err


# ------------------------------------------------------------------ the rule

BAD = [
    ("../x", "'..' component"), ("a/../../x", "'..' component"), ("..", "'..' component"),
    ("/etc/passwd", "absolute path"), ("./x", "'.' component"), ("a//b", "empty component"),
    ("", "empty name"), ("a\x00b", "NUL"), ("a\nb", "U+000A"), ("a\x1b[2Jb", "U+001B"), ("a\x7fb", "U+007F"),
    ("a\x85b", "U+0085"), ("..\\x", "backslash"), ("a/", "empty component"), (7, "not a string"),
]


@pytest.mark.parametrize("name,why", BAD)
def test_a_bad_name_is_refused_with_its_reason(tmp_path, name, why):
    with pytest.raises(safenames.UnsafeName) as caught:
        safenames.inside(str(tmp_path), name, "the device")
    assert why in str(caught.value) and "the device" in str(caught.value)


def test_plain_names_pass_and_land_inside(tmp_path):
    for name in ["journal.jsonl", "data/state/journal-00000001.jsonl", "caf\u00e9 .txt", "...", "a..b", ".hidden"]:
        path = safenames.inside(str(tmp_path), name, "the device")
        assert path.startswith(os.path.realpath(str(tmp_path)) + os.sep)


def test_a_symlink_escape_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(str(outside), str(dest / "logs"))
    with pytest.raises(safenames.UnsafeName) as caught:
        safenames.inside(str(dest), "logs/a.txt", "the image")
    assert "outside" in str(caught.value)
    safenames.inside(str(dest), "other/a.txt", "the image")  # a name that does not go through the link


def test_a_listing_is_checked_whole_and_refuses_duplicates(tmp_path):
    with pytest.raises(safenames.UnsafeName, match="twice"):
        safenames.check_listing(str(tmp_path), ["a", "b", "a"], "the device")
    with pytest.raises(safenames.UnsafeName, match="'..' component"):
        safenames.check_listing(str(tmp_path), ["a", "b", "c/../../d"], "the device")


# ------------------------------------------------------------------ crafted images

@pytest.mark.parametrize("name,why", [
    (b"../x", "'..' component"), (b"../d/", "'..' component"), (b"/tmp/mini-evil-%d" % os.getpid(), "absolute"),
    (b"a\x01b", "U+0001"), (b"..\\..\\x", "backslash"), (b"\xff\xfe", "not UTF-8"),
    (b"x/yy", "a '/' inside one entry's name"),
])
def test_image_extract_refuses_a_crafted_name_and_writes_nothing(tmp_path, name, why):
    image = tmp_path / "evil.bin"
    image.write_bytes(crafted_image([name]))
    before = tree(str(tmp_path))
    code, out, err = mini("image", "extract", image, "--board", "esp32", tmp_path / "out")
    refused(code, err, why)
    if why != "not UTF-8":
        assert ascii(name.rstrip(b"/").decode()) in err, err  # the bad entry, named
    assert tree(str(tmp_path)) == before and not os.path.exists(name.decode("latin-1"))
    assert out == ""


def test_image_extract_refuses_a_symlink_escape_even_with_force(tmp_path):
    image = tmp_path / "good.bin"
    image.write_bytes(crafted_image([]))  # only /logs/good.txt
    outside = tmp_path / "outside"
    outside.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    os.symlink(str(outside), str(out_dir / "logs"))
    code, _, err = mini("image", "extract", image, "--board", "esp32", out_dir, "--force")
    refused(code, err, "'logs'", "outside")
    assert os.listdir(str(outside)) == [] and os.listdir(str(out_dir)) == ["logs"]
    os.unlink(str(out_dir / "logs"))
    code, out, err = mini("image", "extract", image, "--board", "esp32", out_dir, "--force")
    assert code == 0, err
    assert (out_dir / "logs" / "good.txt").read_bytes() == b"a good file"


# ------------------------------------------------------------------ a tampered device

# boot.py of the tampered board: json.dumps adds the entries of /tamper.json to every
# listing the device prints (a list of [name, size] pairs), as tampered firmware could.
TAMPER_BOOT = """
import sys
import json as _json
class _TamperedJSON:
    def __getattr__(self, name):
        return getattr(_json, name)
    def dumps(self, obj, *args, **kwargs):
        if isinstance(obj, list) and obj and all(isinstance(e, list) and len(e) == 2 for e in obj):
            try:
                with open('/tamper.json') as f:
                    obj = obj + _json.loads(f.read())
            except OSError:
                pass
        return _json.dumps(obj, *args, **kwargs)
sys.modules['json'] = _TamperedJSON()
"""


@pytest.fixture(scope="module")
def tampered(tmp_path_factory):
    work = tmp_path_factory.mktemp("tampered")
    board = VirtualBoard(work / "flash.bin", "esp32")
    address = board.start("--preload", "--size-kb", "512")
    boot = work / "boot.py"
    boot.write_text(TAMPER_BOOT)
    mpremote(address, "fs", "cp", str(boot), ":boot.py")
    mpremote(address, "exec", "import os\nos.mkdir('/logs')\nos.mkdir('/odd')\n"
             "with open('/logs/journal.jsonl', 'w') as f:\n    f.write('x')\n"
             "with open('/escape', 'w') as f:\n    f.write('on the device')\n"
             "with open('/odd/ok.txt', 'w') as f:\n    f.write('ok')\n"
             "with open('/odd/bad\\x1bname', 'w') as f:\n    f.write('odd')\n")
    board.stop()
    board.start()  # boots: boot.py installs the tampering
    yield board
    if board.status() is not None:
        board.stop(power_cut=True)


def tamper(board, entries):
    mpremote(board.address, "exec", "with open('/tamper.json', 'w') as f:\n    f.write(%r)\n" % entries)


@pytest.mark.parametrize("entries,why,named", [
    ('[["../escape", 13]]', "'..' component", "'../escape'"),
    ('[["sub/../../escape", 13]]', "'..' component", "'sub/../../escape'"),
    ('[["/tmp/mini-evil", 13]]', "absolute path", "'/tmp/mini-evil'"),
    ('[["..\\\\escape", 13]]', "backslash", "escape"),
    ('[["ok\\u0000", 1]]', "NUL", "ok"),
    ('[["../up/", -1]]', "'..' component", "'../up'"),
    ('[["journal.jsonl", 1]]', "twice", "'journal.jsonl'"),
])
def test_pull_refuses_a_tampered_listing_and_writes_nothing(tampered, tmp_path, entries, why, named):
    tamper(tampered, entries)
    local = tmp_path / "pulled" / "logs"
    local.parent.mkdir()
    code, out, err = mini("pull", "--port", tampered.address, ":logs", local)
    refused(code, err, why, named)
    assert tree(str(tmp_path)) == ["pulled"] and not os.path.exists("/tmp/mini-evil")


def test_pull_refuses_a_listing_of_the_wrong_shape(tampered, tmp_path):
    tamper(tampered, '[["x", "big"]]')
    code, _, err = mini("pull", "--port", tampered.address, ":logs", tmp_path / "p")
    refused(code, err, "not a list of [name, size] entries")
    assert os.listdir(str(tmp_path)) == []


def test_pull_refuses_a_real_odd_name_on_littlefs(tampered, tmp_path):
    tamper(tampered, "[]")
    code, _, err = mini("pull", "--port", tampered.address, ":odd", tmp_path / "odd")
    refused(code, err, "U+001B", ascii("bad\x1bname"))
    assert os.listdir(str(tmp_path)) == []


def test_pull_of_an_honest_listing_still_works(tampered, tmp_path):
    tamper(tampered, "[]")
    code, out, err = mini("pull", "--port", tampered.address, ":logs", tmp_path / "logs")
    assert code == 0 or "journal.jsonl" in out, err  # 'x' is not a journal: verify may complain, the copy is made
    assert (tmp_path / "logs" / "journal.jsonl").read_bytes() == b"x"
