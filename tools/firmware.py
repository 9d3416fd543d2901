"""MicroPython builds for the tests: the float32 unix port and ports/qemu MICROBIT.

    python3 tools/firmware.py build [TARGET ...]     build (or find in the cache); print the paths
    python3 tools/firmware.py run TARGET SCRIPT [--romfs DIR] [--timeout S]
                                                     run a script on a qemu target (raw REPL)
    python3 tools/firmware.py romfs DIR OUT          a ROMFS image of DIR (.py compiled to .mpy)

TARGETS:
  unix-f32           the unix port with single-precision floats
                     (CFLAGS_EXTRA=-DMICROPY_FLOAT_IMPL=MICROPY_FLOAT_IMPL_FLOAT)
  microbit-192k      ports/qemu BOARD=MICROBIT (Cortex-M0, float32, 31-bit small ints) with
  microbit-128k      LittleFS2 and FAT, a GC heap of 192 KB (RP2040-like) or 128 KB (an ESP32
                     without PSRAM), ROMFS at ROMFS_START
  microbit-frozen    microbit-192k with the four bricks frozen (micropython/manifest.py)
  microbit-frozen-96k  the same with a 96 KB heap: the heap goal of issue 14's workloads

The source is ../shared/micropython/*.tar.gz next to the repository (read-only). It is
unpacked once per tarball hash, and each target is built once per (tarball hash, build
flags, tools/mcu/ sources), in MINI_FIRMWARE_CACHE (default ~/.cache/mini-firmware): never
inside the repository. A build holds a lock file, so concurrent callers wait instead of
building twice. The qemu targets need Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi
and qemu-system-arm: ensure_debian_packages() installs them when missing (as root, with
apt-get), or raises Unavailable saying why it cannot.
"""
import fcntl
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_DIR = os.path.join(os.path.dirname(TOP), "shared", "micropython")
HAL_MODULE = os.path.join(TOP, "tools", "mcu")  # USER_C_MODULES dir (mini_hal: clock symbols)
DEBIAN_PACKAGES = ["gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm"]

# Where ROMFS images are loaded in the emulated nRF51 flash (1 MB; the firmware is
# ~260 KB with the bricks frozen; qemu also reserves the size of .bss after
# it, so the image starts at 512 KB), and the emulated RAM. The firmware links against the
# first 256 KB of RAM; the rest (RAM_EXTRA_START on) is memory the heap never sees:
# tests/mcu/extram.py puts the RAM block devices there, as the flash of a real board is
# not in its heap either.
ROMFS_START = 0x80000
ROMFS_SIZE = 0x80000
SRAM_BYTES = 16 * 1024 * 1024
RAM_EXTRA_START = 0x20040000

QEMU_FLAGS = ["-machine", "microbit",
              "-global", "nrf51-soc.flash-size=1048576",
              "-global", "nrf51-soc.sram-size=%d" % SRAM_BYTES,
              "-semihosting", "-nographic", "-monitor", "null"]

_QEMU_MAKE = ["BOARD=MICROBIT", "MICROPY_VFS_LFS2=1", "MICROPY_VFS_FAT=1",
              "USER_C_MODULES=" + HAL_MODULE,
              # f_chdir/f_getcwd: the FAT VFS calls them; RPATH=2 compiles them in. Long
              # file names and 4 KB sectors: the FAT configuration of the ESP32 port.
              "CFLAGS_EXTRA=-DMICROPY_FATFS_RPATH=2 -DMICROPY_FATFS_ENABLE_LFN=1"
              " -DMICROPY_FATFS_LFN_CODE_PAGE=437 -DMICROPY_FATFS_MAX_SS=4096",
              "MICROPY_HW_ROMFS_PART0_START=0x%x" % ROMFS_START,
              "MICROPY_HW_ROMFS_PART0_SIZE=0x%x" % ROMFS_SIZE]

TARGETS = {
    "unix-f32": ("ports/unix", [
        "VARIANT=standard", "PROG=micropython",
        # Not in the tarball (submodules) or not needed: berkeley-db, mbedtls, libffi, readline.
        "MICROPY_PY_BTREE=0", "MICROPY_PY_SSL=0", "MICROPY_PY_FFI=0", "MICROPY_USE_READLINE=0",
        "CFLAGS_EXTRA=-DMICROPY_FLOAT_IMPL=MICROPY_FLOAT_IMPL_FLOAT"], "micropython"),
    "microbit-192k": ("ports/qemu", _QEMU_MAKE + ["MICROPY_HEAP_SIZE=196608"], "firmware.elf"),
    "microbit-128k": ("ports/qemu", _QEMU_MAKE + ["MICROPY_HEAP_SIZE=131072"], "firmware.elf"),
    "microbit-frozen": ("ports/qemu", _QEMU_MAKE + [
        "MICROPY_HEAP_SIZE=196608",
        "FROZEN_MANIFEST=" + os.path.join(TOP, "micropython", "manifest.py")], "firmware.elf"),
    "microbit-frozen-96k": ("ports/qemu", _QEMU_MAKE + [
        "MICROPY_HEAP_SIZE=98304",
        "FROZEN_MANIFEST=" + os.path.join(TOP, "micropython", "manifest.py")], "firmware.elf"),
}


class Unavailable(Exception):
    """A build cannot be made here (no tarball, no apt, not root...); the message says why."""


def cache_dir():
    path = os.environ.get("MINI_FIRMWARE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "mini-firmware")
    os.makedirs(path, exist_ok=True)
    return path


def tarball():
    found = sorted(glob.glob(os.path.join(SOURCE_DIR, "*.tar.gz")))
    if not found:
        raise Unavailable("no MicroPython tarball in %s" % SOURCE_DIR)
    return found[-1]


def _sha256(paths):
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


class _Lock:
    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.f = open(self.path, "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _log(msg):
    print("[firmware] " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- Debian packages

def _have_arm_toolchain():
    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")):
        return False
    return bool(glob.glob("/usr/lib/arm-none-eabi/include/stdlib.h"))  # libnewlib-arm-none-eabi


def ensure_debian_packages():
    """Install the ARM toolchain and qemu with apt-get when they are missing."""
    if _have_arm_toolchain():
        return
    if not shutil.which("apt-get"):
        raise Unavailable("arm-none-eabi-gcc/qemu-system-arm missing and apt-get is not available")
    if os.geteuid() != 0:
        raise Unavailable("arm-none-eabi-gcc/qemu-system-arm missing; installing them needs root")
    with _Lock(os.path.join(cache_dir(), "apt.lock")):
        if _have_arm_toolchain():
            return
        _log("installing " + " ".join(DEBIAN_PACKAGES))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + DEBIAN_PACKAGES):
            proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if proc.returncode != 0:
                raise Unavailable("%s failed:\n%s" % (" ".join(cmd), proc.stdout.decode()[-3000:]))
    if not _have_arm_toolchain():
        raise Unavailable("apt-get installed %s but the tools are still missing" % DEBIAN_PACKAGES)


# ---------------------------------------------------------------- source and builds

def source_tree():
    """The unpacked MicroPython tree for the current tarball (unpacked once)."""
    tar = tarball()
    key = _sha256([tar])[:16]
    root = os.path.join(cache_dir(), "src-" + key)
    tree = os.path.join(root, "micropython")
    with _Lock(root + ".lock"):
        if not os.path.isdir(tree):
            _log("unpacking %s" % os.path.basename(tar))
            scratch = tempfile.mkdtemp(prefix="src-", dir=cache_dir())
            with tarfile.open(tar) as t:
                t.extractall(scratch)
            os.makedirs(root, exist_ok=True)
            os.rename(os.path.join(scratch, "micropython"), tree)  # whole tree or nothing
            shutil.rmtree(scratch, ignore_errors=True)
        mpy_cross = os.path.join(tree, "mpy-cross", "build", "mpy-cross")
        if not os.path.exists(mpy_cross):
            _log("building mpy-cross")
            _make(os.path.join(tree, "mpy-cross"), [])
    return tree


def _make(cwd, args):
    cmd = ["make", "-j%d" % max(1, os.cpu_count() or 1)] + args
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError("%s in %s failed:\n%s" % (" ".join(cmd), cwd, proc.stdout.decode()[-6000:]))


def build_key(target):
    port, flags, _ = TARGETS[target]
    extra = sorted(glob.glob(os.path.join(HAL_MODULE, "*", "*")))
    if "FROZEN_MANIFEST" in " ".join(flags):
        extra += sorted(glob.glob(os.path.join(TOP, "shared", "*.py"))) + [
            os.path.join(TOP, "micropython", "manifest.py")]
    text = json.dumps([port, flags, _sha256([tarball()] + extra)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build(target):
    """Path of the built target (the unix executable or firmware.elf), building it if needed."""
    if target not in TARGETS:
        raise ValueError("unknown target %r (one of %s)" % (target, ", ".join(sorted(TARGETS))))
    port, flags, product = TARGETS[target]
    if port == "ports/qemu":
        ensure_debian_packages()
    out_dir = os.path.join(cache_dir(), "%s-%s" % (target, build_key(target)))
    result = os.path.join(out_dir, product)
    if os.path.exists(result):
        return result
    tree = source_tree()
    with _Lock(out_dir + ".lock"):
        if os.path.exists(result):
            return result
        _log("building %s (%s)" % (target, " ".join(flags)))
        build_dir = os.path.join(cache_dir(), "build-%s-%s" % (target, build_key(target)))
        _make(os.path.join(tree, port), flags + ["BUILD=" + build_dir])
        made = os.path.join(build_dir, product if port == "ports/qemu" else "micropython")
        os.makedirs(out_dir + ".tmp", exist_ok=True)
        shutil.copy2(made, os.path.join(out_dir + ".tmp", product))
        os.rename(out_dir + ".tmp", out_dir)
        shutil.rmtree(build_dir, ignore_errors=True)
    return result


# ---------------------------------------------------------------- ROMFS and qemu

def romfs(src_dir, out_path):
    """Build a ROMFS image of src_dir (.py compiled to .mpy by mpremote); return its size."""
    mpremote = os.path.join(os.path.dirname(sys.executable), "mpremote")
    cmd = [mpremote if os.path.exists(mpremote) else "mpremote", "romfs", "-o", out_path, "build", src_dir]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (" ".join(cmd), proc.stdout.decode()[-3000:]))
    size = os.path.getsize(out_path)
    if size > ROMFS_SIZE:
        raise RuntimeError("ROMFS image %s is %d bytes, more than the %d reserved" % (out_path, size, ROMFS_SIZE))
    return size


def qemu_command(firmware, romfs_image=None):
    cmd = ["qemu-system-arm"] + QEMU_FLAGS
    if romfs_image:
        cmd += ["-device", "loader,file=%s,addr=0x%x,force-raw=on" % (romfs_image, ROMFS_START)]
    return cmd + ["-serial", "pty", "-kernel", firmware]


def _children(pid):
    """Ids of the processes whose parent is `pid` (Linux /proc)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(name))
    return found


def run(target, script_text, romfs_image=None, timeout=900):
    """Run script_text on a fresh emulated board through the raw REPL.

    Returns (exit code of tools/pyboard.py, its output). pyboard exits 1 on an uncaught
    exception; a SystemExit counts as success, so scripts report their outcome in their
    output (the test scripts end with "N passed, N failed").
    """
    firmware = build(target)
    pyboard = os.path.join(source_tree(), "tools", "pyboard.py")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script_text)
        path = f.name
    device = "execpty:" + " ".join(qemu_command(firmware, romfs_image))
    proc = subprocess.Popen([sys.executable, pyboard, "-d", device, path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # pyboard starts qemu in a session of its own: kill that one first, or it outlives us.
        for child in _children(proc.pid):
            try:
                os.killpg(child, signal.SIGKILL)
            except OSError:
                pass
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return -1, out.decode("utf-8", "replace") + "\n[timeout after %d s]" % timeout
    finally:
        os.unlink(path)
    return proc.returncode, out.decode("utf-8", "replace")


def main(argv):
    if len(argv) >= 1 and argv[0] == "build":
        for target in argv[1:] or sorted(TARGETS):
            print(target, build(target))
        return 0
    if len(argv) >= 3 and argv[0] == "romfs":
        print(romfs(argv[1], argv[2]))
        return 0
    if len(argv) >= 3 and argv[0] == "run":
        image = argv[argv.index("--romfs") + 1] if "--romfs" in argv else None
        timeout = int(argv[argv.index("--timeout") + 1]) if "--timeout" in argv else 900
        with open(argv[2]) as f:
            code, out = run(argv[1], f.read(), image, timeout)
        sys.stdout.write(out)
        return code
    print((__doc__ or "").strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
