# Records the file operations that the core makes, on CPython, in-process.
#
# Every write, sync, create, rename and remove in shared/ goes through minishim
# (the bricks read files with open(path, "rb") themselves, but never write them).
# While a Recorder is installed, minishim's `os`, `open`, `_datasync`, `remove` and
# `rename` are wrappers that do the real operation on the real disk and append
# what it did to `trace`, at the level of the kernel calls:
#
#   ("mkdir", path)              a new directory
#   ("creat", path, ino)         a new, empty file (os.open with O_CREAT, open(.., "wb"))
#   ("write", ino, offset, data) bytes that reached the kernel (os.write, os.pwrite, the
#                                flush of a buffered file: Python's buffer is not the kernel's)
#   ("sync", ino, how)           fsync or fdatasync of a file (how: "fsync"/"fdatasync")
#   ("dsync", dirpath)           fsync of a directory
#   ("unlink", path)             ("rename", src, dst)
#   ("mark", kind, value)        a workload's note: ("begin", j) op j started, ("ack", j) ops 1..j acknowledged
#
# Paths are relative to the root given to the Recorder ("." is the root). Files
# get inode numbers of our own, so a rename or a remove does not lose track of
# which data belongs to which file. Operations outside the root are passed
# through and not recorded. A call that the models do not know (os.replace, truncate,
# rmdir...) raises, and explore.py checks that replaying the whole trace rebuilds the
# exact files the workload left: a change the recorder missed fails loudly.
import io
import os

import minishim

class Recorder:
    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.trace = []
        self.inodes = {}      # relative path -> ino, for files
        self.dirs = set()     # relative paths of directories
        self._fds = {}        # fd -> ("file", ino) or ("dir", relpath)
        self._next_ino = 1
        self._saved = None
        self.initial = scan(self.root)  # (dirs, {path: bytes}): what the trace starts from
        for path in sorted(self.initial[1]):
            self.inodes[path] = self._new_ino()
        self.dirs = set(self.initial[0])

    # -- the state the trace starts from, and its own bookkeeping

    def _new_ino(self):
        ino = self._next_ino
        self._next_ino += 1
        return ino

    def rel(self, path):
        """The path relative to the root, or None if it is outside."""
        full = os.path.realpath(path if os.path.isabs(path) else os.path.join(os.getcwd(), path))
        if full == self.root:
            return "."
        if full.startswith(self.root + "/"):
            return full[len(self.root) + 1:]
        return None

    def mark(self, kind, value):
        self.trace.append(("mark", kind, value))

    # -- installing into minishim

    def __enter__(self):
        self._saved = {name: getattr(minishim, name) for name in ("os", "_datasync", "remove", "rename")}
        self._saved_open = minishim.__dict__.get("open")
        minishim.os = _RecordingOS(self)
        minishim._datasync = self.fdatasync
        minishim.remove = self.remove
        minishim.rename = self.rename
        minishim.open = self.open
        return self

    def __exit__(self, *exc):
        for name, value in self._saved.items():
            setattr(minishim, name, value)
        if self._saved_open is None:
            del minishim.open
        else:
            minishim.open = self._saved_open
        self._saved = None

    # -- the wrapped calls

    def os_open(self, path, flags, mode=0o777):
        rel = self.rel(path)
        existed = os.path.exists(path)
        fd = os.open(path, flags, mode)
        if rel is None:
            return fd
        if os.path.isdir(path):
            self._fds[fd] = ("dir", rel)
            return fd
        if not existed:
            ino = self._new_ino()
            self.inodes[rel] = ino
            self.trace.append(("creat", rel, ino))
        if flags & os.O_TRUNC and existed:
            raise AssertionError("recorder: O_TRUNC of an existing file is not modelled")
        self._fds[fd] = ("file", self.inodes[rel])
        return fd

    def os_write(self, fd, data):
        where = self._fds.get(fd)
        offset = os.lseek(fd, 0, os.SEEK_CUR) if where else 0
        done = os.write(fd, data)
        if where:
            self.trace.append(("write", where[1], offset, bytes(data[:done])))
        return done

    def os_pwrite(self, fd, data, offset):
        where = self._fds.get(fd)
        done = os.pwrite(fd, data, offset)
        if where:
            self.trace.append(("write", where[1], offset, bytes(data[:done])))
        return done

    def not_modelled(self, name):
        def refuse(*args, **kwargs):
            raise AssertionError("recorder: os.%s is not modelled; teach tests/crashstate about it" % name)
        return refuse

    def os_fsync(self, fd):
        os.fsync(fd)
        self._synced(fd, "fsync")

    def fdatasync(self, fd):
        os.fdatasync(fd)
        self._synced(fd, "fdatasync")

    def _synced(self, fd, how):
        where = self._fds.get(fd)
        if where is None:
            return
        if where[0] == "dir":
            self.trace.append(("dsync", where[1]))
        else:
            self.trace.append(("sync", where[1], how))

    def os_close(self, fd):
        self._fds.pop(fd, None)
        os.close(fd)

    def os_mkdir(self, path, *args):
        os.mkdir(path, *args)
        rel = self.rel(path)
        if rel is not None:
            self.dirs.add(rel)
            self.trace.append(("mkdir", rel))

    def remove(self, path):
        os.remove(path)
        rel = self.rel(path)
        if rel is not None:
            self.inodes.pop(rel)
            self.trace.append(("unlink", rel))

    def rename(self, src, dst):
        os.rename(src, dst)
        rel_src, rel_dst = self.rel(src), self.rel(dst)
        if rel_src is not None:
            self.inodes[rel_dst] = self.inodes.pop(rel_src)
            self.trace.append(("rename", rel_src, rel_dst))

    def open(self, path, mode="r", *args, **kwargs):
        rel = self.rel(path)
        if rel is None or mode.replace("b", "") == "r":
            return io.open(path, mode, *args, **kwargs)
        if "b" not in mode or args or kwargs:
            raise AssertionError("recorder: open(%r, %r) is not modelled" % (path, mode))
        existed = os.path.exists(path)
        raw = _RecordingFileIO(self, path, mode.replace("b", ""))
        if not existed:
            ino = self._new_ino()
            self.inodes[rel] = ino
            self.trace.append(("creat", rel, ino))
        elif "w" in mode:
            raise AssertionError("recorder: truncating %s is not modelled" % rel)
        raw.ino = self.inodes[rel]
        self._fds[raw.fileno()] = ("file", raw.ino)
        return io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw)


class _RecordingFileIO(io.FileIO):
    """The kernel side of a buffered file: records each write as it reaches the kernel."""

    def __init__(self, recorder, path, mode):
        super().__init__(path, mode)
        self._recorder = recorder
        self.ino = None

    def write(self, data):
        fd = self.fileno()
        offset = os.fstat(fd).st_size if "a" in self.mode else os.lseek(fd, 0, os.SEEK_CUR)
        done = super().write(data)
        if done:
            self._recorder.trace.append(("write", self.ino, offset, bytes(memoryview(data)[:done])))
        return done

    def close(self):
        if not self.closed:
            self._recorder._fds.pop(self.fileno(), None)
        super().close()


class _RecordingOS:
    """What minishim sees as `os` while recording: the real module, some calls wrapped."""

    def __init__(self, recorder):
        self.open = recorder.os_open
        self.write = recorder.os_write
        self.fsync = recorder.os_fsync
        self.close = recorder.os_close
        self.mkdir = recorder.os_mkdir
        self.pwrite = recorder.os_pwrite
        # Calls the core does not make today: if it starts to, the recorder must learn them.
        for name in ("replace", "truncate", "ftruncate", "rmdir", "link", "symlink", "writev", "pwritev",
                     "sync_file_range", "posix_fallocate"):
            setattr(self, name, recorder.not_modelled(name))

    def __getattr__(self, name):
        return getattr(os, name)


def scan(root):
    """(set of relative dirs, {relative path: bytes}) of a real directory tree."""
    dirs = {"."}
    files = {}
    for here, subdirs, names in os.walk(root):
        rel = os.path.relpath(here, root)
        for name in subdirs:
            dirs.add(os.path.normpath(os.path.join(rel, name)))
        for name in names:
            with open(os.path.join(here, name), "rb") as f:
                files[os.path.normpath(os.path.join(rel, name))] = f.read()
    return dirs, files
