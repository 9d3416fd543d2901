"""A CPython device for the tests: puts readings into its MiniQueue and forwards them
(miniforward + PahoTransport), printing "put ID RUN N" for every put that returned.

    python device_proc.py --queue DIR --device ID --port PORT --count N [--run R] [--batch B]
It ends (printing "idle") when it has put N readings (or --stop-file exists) and all are confirmed."""
import argparse
import os
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [TOP + "/shared", TOP + "/cpython"]

from miniqueue import MiniQueue  # noqa: E402
from miniforward import Forwarder  # noqa: E402
from minitools.forward_paho import PahoTransport  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--queue", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--run", type=int, default=0)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--resend-ms", type=int, default=2000)
    p.add_argument("--every-ms", type=float, default=0, help="pause between puts")
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--tls-ca")
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--stop-file", help="when this file exists: stop putting, forward the rest, exit")
    args = p.parse_args()
    q = MiniQueue.open(args.queue, max_bytes=4 << 20)
    transport = PahoTransport("127.0.0.1", args.port, client_id=args.device, username=args.username,
                              password=args.password, tls_ca=args.tls_ca, timeout=2.0)
    fw = Forwarder(q, transport, args.device, batch=args.batch, window=args.window,
                   resend_ms=args.resend_ms, retry_ms=50, max_retry_ms=500)
    out = sys.stdout
    for n in range(args.count):
        if args.stop_file and n % 16 == 0 and os.path.exists(args.stop_file):
            break
        mid = q.put({"n": n, "r": args.run, "t": time.time()})
        out.write("put %d %d %d\n" % (mid, args.run, n))
        out.flush()
        fw.pump()
        if args.every_ms:
            time.sleep(args.every_ms / 1000)
    deadline = time.monotonic() + args.timeout
    while not fw.idle() and time.monotonic() < deadline:
        if not fw.pump():
            time.sleep(0.005)
    out.write("idle %s sent=%d resent=%d confirmed=%d connects=%d failures=%d last_error=%r\n" % (
        fw.idle(), fw.sent, fw.resent, fw.confirmed, fw.connects, fw.failures, fw.last_error))
    out.flush()
    fw.close()
    q.close()
    return 0 if fw.idle() else 1


if __name__ == "__main__":
    sys.exit(main())
