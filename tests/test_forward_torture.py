# Store and forward under faults, with real parts: mosquitto SIGKILLed and restarted
# mid-stream, `mini ingest` processes SIGKILLed while they commit, CPython device
# processes SIGKILLed while they put and forward, and every device connection going
# through a loopback TCP proxy that cuts it at a random byte. Afterwards every put
# that returned must be in the database exactly once, in an order the ids recover.
# MINI_TORTURE=long: 220 process kills (plus the proxy's cuts); the bounded run: 12.
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "forward"))
import mqttkit  # noqa: E402
import reliability  # noqa: E402

DEVICE = os.path.join(mqttkit.TOP, "tests", "forward", "device_proc.py")
KILLS = reliability.pick(ci=12, long=220)
DEVICES = reliability.pick(ci=3, long=4)


def start_device(tmp_path, name, port, run):
    return subprocess.Popen([sys.executable, DEVICE, "--queue", str(tmp_path / ("q-" + name)), "--device", name,
                             "--port", str(port), "--count", "1000000", "--run", str(run), "--batch", "4",
                             "--every-ms", "4", "--resend-ms", "1500", "--timeout", "180",
                             "--stop-file", str(tmp_path / "stop")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_exactly_once_under_broker_ingester_device_kills_and_cut_connections(tmp_path):
    started = time.time()
    rng = random.Random(int(os.environ.get("MINI_FORWARD_SEED", "16")))
    broker = mqttkit.Broker(tmp_path / "broker")
    proxy = mqttkit.Proxy(broker.port, cut_after=(100, 20000), seed=rng.randrange(1 << 30))
    db = tmp_path / "readings.db"
    ingesters = [mqttkit.ingester(db, broker.port) for _ in range(2)]
    names = ["dev%d" % i for i in range(DEVICES)]
    runs = dict((name, 0) for name in names)
    procs = dict((name, start_device(tmp_path, name, proxy.port, 0)) for name in names)
    returned = {}
    faults = {"broker": 0, "ingester": 0, "device": 0}
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 0.8))
            kind = rng.choice(["broker", "ingester", "ingester", "device", "device"])
            faults[kind] += 1
            if kind == "broker":
                broker.kill()
                time.sleep(rng.uniform(0, 0.5))
                broker.start()
            elif kind == "ingester":
                victim = rng.randrange(len(ingesters))
                ingesters[victim].send_signal(signal.SIGKILL)
                ingesters[victim].communicate()
                ingesters[victim] = mqttkit.ingester(db, broker.port)
            else:
                name = rng.choice(names)
                procs[name].send_signal(signal.SIGKILL)
                out, _ = procs[name].communicate()
                mqttkit.read_puts(out, returned, name)
                runs[name] += 1
                procs[name] = start_device(tmp_path, name, proxy.port, runs[name])
        with open(str(tmp_path / "stop"), "w"):  # stop putting; forward what is left (through the cutting proxy)
            pass
        tails = {}
        for name in names:
            out, err = procs[name].communicate(timeout=240)
            mqttkit.read_puts(out, returned, name)
            tails[name] = (out.splitlines()[-1:], err[-3000:])
        ingester_errors = [mqttkit.stop(p)[1].decode() for p in ingesters]
    finally:
        for p in list(procs.values()) + ingesters:
            if p.poll() is None:
                p.kill()
        proxy.close()
        broker.stop()
    puts = sum(len(v) for v in returned.values())
    print("faults", faults, "proxy cuts", proxy.cuts, "puts", puts, "tails", tails, ingester_errors)
    lost = dup = order = 0
    try:
        rows = mqttkit.check_exactly_once(db, returned)
    except AssertionError as exc:
        rows = None
        text = str(exc)
        lost, dup, order = text.startswith("lost"), text.startswith("duplicate"), text.startswith("order")
        raise
    finally:
        kills = sum(faults.values())
        reliability.record(
            suite="forward", brick="miniforward", fs="posix",
            config="%d CPython devices (batch 4) via a cutting proxy, 2 ingesters, 1 mosquitto" % DEVICES,
            cut_points=kills + proxy.cuts, checks=rows, acked_ops=puts, acked_lost=int(lost),
            violations=int(dup) + int(order), seconds=round(time.time() - started, 1),
            notes="kills: %d broker, %d ingester, %d device; %d connections cut by the proxy" % (
                faults["broker"], faults["ingester"], faults["device"], proxy.cuts))
    for name in names:
        assert tails[name][0] and tails[name][0][0].startswith("idle True"), tails[name]
    assert puts > 100 and rows >= puts
    assert proxy.cuts > 0
