"""Real parts for the store-and-forward tests: a mosquitto broker per test (Debian's,
installed here when missing), a loopback TCP proxy that cuts connections, and
`mini ingest` processes. Everything listens on 127.0.0.1, on free ports."""
import glob
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time

try:
    import pytest
except ImportError:  # the demo uses this module outside pytest
    pytest = None

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_apt_tried = []


def ensure_mosquitto():
    """The mosquitto binary; apt-get installs it when missing (skip where apt is unavailable)."""
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        reason = "mosquitto is not installed and apt-get (as root) is not available to install it"
        if pytest is None:
            raise RuntimeError(reason)
        pytest.skip(reason)
    if not _apt_tried:
        _apt_tried.append(1)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "mosquitto"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if not found:
        raise RuntimeError("apt-get install mosquitto did not give a mosquitto binary")
    return found


UMQTT = "micropython/lib/micropython-lib/micropython/umqtt.simple/umqtt/simple.py"


def umqtt_package(into):
    """umqtt/simple.py from the MicroPython source tarball with micropython-lib
    (../shared/micropython, or MINI_MICROPYTHON_SRC), and a package.json for
    `mpremote mip install` that installs it; None if the tarball is not there."""
    where = os.environ.get("MINI_MICROPYTHON_SRC", os.path.join(os.path.dirname(TOP), "shared", "micropython"))
    tarballs = sorted(glob.glob(os.path.join(where, "micropython-*-with-lib.tar.gz")))
    if not tarballs:
        return None
    with tarfile.open(tarballs[-1]) as tar:
        source = tar.extractfile(UMQTT)
        assert source is not None
        data = source.read()
    os.makedirs(os.path.join(into, "umqtt"), exist_ok=True)
    with open(os.path.join(into, "umqtt", "simple.py"), "wb") as f:
        f.write(data)
    with open(os.path.join(into, "package.json"), "w") as f:
        json.dump({"urls": [["umqtt/simple.py", "umqtt/simple.py"]], "version": "1.8.0"}, f)
    return os.path.join(into, "package.json")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("nothing listens on 127.0.0.1:%d" % port)


class Broker:
    """mosquitto on 127.0.0.1:port with persistence on; kill() is a SIGKILL, start() restarts it."""

    def __init__(self, directory, extra="", port=None, listener_extra=""):
        self.binary = ensure_mosquitto()
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("listener %d 127.0.0.1\n%s\n" % (self.port, listener_extra))
            f.write("persistence true\npersistence_location %s/\n" % self.dir)
            f.write("log_dest file %s/mosquitto.log\n" % self.dir)
            f.write("max_queued_messages 100000\nmax_inflight_messages 0\n")
            if os.geteuid() == 0:  # as root, mosquitto would switch to user "mosquitto", who cannot read the test's files
                f.write("user root\n")
            if "allow_anonymous" not in extra and "password_file" not in extra:
                f.write("allow_anonymous true\n")
            f.write(extra + "\n")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([self.binary, "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        self.kill()


class Proxy:
    """A loopback TCP proxy that cuts each connection after a random number of bytes
    (cut_after=(lo, hi); None: never), in either direction. Counts its cuts."""

    def __init__(self, target_port, cut_after=None, seed=0):
        self.target = target_port
        self.cut_after = cut_after
        self.rng = random.Random(seed)
        self.cuts = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.lock = threading.Lock()
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                budget = self.rng.randint(*self.cut_after) if self.cut_after else None
            pair = [client, upstream, budget]
            with self.lock:
                self.conns.append(pair)
            threading.Thread(target=self._pipe, args=(pair, client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(pair, upstream, client), daemon=True).start()

    def _pipe(self, pair, src, dst):
        while True:
            try:
                data = src.recv(4096)
            except OSError:
                data = b""
            if not data:
                break
            with self.lock:
                if pair[2] is not None:
                    if len(data) >= pair[2]:
                        data = data[:pair[2]]
                        pair[2] = 0
                    else:
                        pair[2] -= len(data)
                cut = pair[2] == 0
            try:
                if data:
                    dst.sendall(data)
            except OSError:
                break
            if cut:
                with self.lock:
                    if pair[2] == 0:
                        self.cuts += 1
                        pair[2] = -1
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.closed = True
        self.sock.close()
        with self.lock:
            for pair in self.conns:
                for s in pair[:2]:
                    try:
                        s.close()
                    except OSError:
                        pass


def ingester(db, port, *extra, env=None):
    """A `mini ingest` process; returns it once it has subscribed."""
    cmd = [sys.executable, "-m", "minitools.cli", "ingest", "--db", str(db), "--broker", "127.0.0.1:%d" % port]
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join([TOP + "/shared", TOP + "/cpython"]))
    full_env.update(env or {})
    proc = subprocess.Popen(cmd + [str(a) for a in extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=full_env)
    line = proc.stdout.readline() if proc.stdout else b""
    if b"subscribed" not in line:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("mini ingest did not subscribe: %r %r %r" % (line, out, err))
    return proc


def stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def rows(db):
    con = sqlite3.connect(str(db))
    try:
        return con.execute("SELECT device, incarnation, id, payload FROM messages").fetchall()
    finally:
        con.close()


def check_exactly_once(db, returned):
    """returned: {device: [(queue id, run, n)]}, every put that returned on the devices
    (its body is {"n": n, "r": run, ...}).

    Each is in the database exactly once (by content: no second copy under another
    identity either), and each device's order is recovered from (incarnation, id).
    Returns the number of rows."""
    import json
    found = rows(db)
    by_content = {}
    per = {}
    for device, inc, mid, payload in found:
        body = json.loads(payload)
        key = (device, body.get("r", 0), body["n"])
        assert key not in by_content, "duplicate: %r stored as %r and %r" % (key, by_content[key], (inc, mid))
        by_content[key] = (inc, mid)
        per.setdefault((device, inc), []).append((mid, key[1:]))
    lost = [(device, r, n, mid) for device in returned for mid, r, n in returned[device]
            if (device, r, n) not in by_content]
    assert not lost, "lost %d: %r" % (len(lost), lost[:10])
    # order: within one incarnation, ascending ids carry ascending (run, counter)
    for key in per:
        counters = [c for _, c in sorted(per[key])]
        assert counters == sorted(counters), "order broken for %r" % (key,)
    return len(found)


def read_puts(text, returned, device):
    """Add the "put ID RUN N" lines a device process printed to returned[device]."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "put":
            returned.setdefault(device, []).append((int(parts[1]), int(parts[2]), int(parts[3])))
