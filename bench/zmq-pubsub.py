#!/usr/bin/python3
"""ZeroMQ PUB/SUB with a REQ/REP sync socket, for the bench's ZeroMQ rows (bench/zmq.ts).

The workload of the reference team's mini-app, written for the bench: the publisher binds a PUB
socket and a REP sync socket; the subscriber connects a SUB (subscribed to everything) and a REQ
socket, then asks for the sync at once. The publisher answers with what it will send, sends the
messages and an end marker, and waits for the subscriber's FIN. A PUB socket drops what it sends
before the subscription reaches it, so what arrives depends on how fast the subscriber's new
connections cross the path. Neither side bounds its queue (high-water mark 0), as in the mini-app.

  zmq-pubsub.py pub --port P --sync S --message-bytes B --total-bytes T
  zmq-pubsub.py sub --port P --sync S        (prints one JSON line with what arrived)
"""
import argparse
import json
import sys
import time

import zmq

DATA = b"D"
END = b"E"
HOST = "127.0.0.1"


def publisher(a):
    ctx = zmq.Context()
    sync = ctx.socket(zmq.REP)
    sync.setsockopt(zmq.LINGER, 0)
    sync.bind(f"tcp://{HOST}:{a.sync}")
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(f"tcp://{HOST}:{a.port}")
    count = a.total_bytes // a.message_bytes
    print("ready", flush=True)
    if not sync.poll(a.timeout * 1000):
        sys.exit(f"publisher: no sync request within {a.timeout} s")
    sync.recv()
    sync.send_string(json.dumps({"messages": count, "messageBytes": a.message_bytes}))
    payload = DATA + bytes(a.message_bytes - 1)
    for _ in range(count):
        pub.send(payload, copy=False)
    pub.send(END)
    # The subscriber says FIN once it has the end marker, or has given up waiting for it.
    if sync.poll(a.timeout * 1000):
        sync.recv()
        sync.send(b"FIN_ACK")
    print(json.dumps({"sent": count}), flush=True)
    ctx.destroy(linger=0)


def subscriber(a):
    ctx = zmq.Context()
    sync = ctx.socket(zmq.REQ)
    sync.setsockopt(zmq.LINGER, 0)
    sync.connect(f"tcp://{HOST}:{a.sync}")
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(f"tcp://{HOST}:{a.port}")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sync.send(b"SYNC")
    if not sync.poll(a.timeout * 1000):
        sys.exit(f"subscriber: no sync answer within {a.timeout} s")
    plan = json.loads(sync.recv())
    start = time.monotonic()
    first = last = None
    received = 0
    received_bytes = 0
    end = False
    # Gives up when nothing arrives for a while: the end marker can be lost with the rest
    # when the subscription crossed the path after everything was sent.
    while sub.poll(a.idle * 1000):
        m = sub.recv(copy=False)
        now = time.monotonic()
        if m.bytes[:1] == END:
            end = True
            break
        if first is None:
            first = now
        last = now
        received += 1
        received_bytes += len(m)
    sync.send(b"FIN")
    if sync.poll(a.timeout * 1000):
        sync.recv()
    seconds = (last - start) if last is not None else 0.0
    print(
        json.dumps(
            {
                "sent": plan["messages"],
                "received": received,
                "receivedBytes": received_bytes,
                "seconds": seconds,
                "gbps": 8 * received_bytes / seconds / 1e9 if seconds > 0 else 0.0,
                "efficiencyPercent": 100.0 * received / plan["messages"] if plan["messages"] else 0.0,
                "firstMessageAfterSyncMs": (first - start) * 1000 if first is not None else None,
                "endMarker": end,
            }
        ),
        flush=True,
    )
    ctx.destroy(linger=0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("role", choices=["pub", "sub"])
    p.add_argument("--port", type=int, required=True, help="the PUB port (where the subscriber connects to reach it)")
    p.add_argument("--sync", type=int, required=True, help="the REP sync port (idem)")
    p.add_argument("--message-bytes", type=int, default=65536)
    p.add_argument("--total-bytes", type=int, default=2**30)
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for the other side's sync or FIN")
    p.add_argument("--idle", type=float, default=10, help="the subscriber gives up after this many seconds without a message")
    a = p.parse_args()
    if a.message_bytes < 1 or a.total_bytes < a.message_bytes:
        sys.exit("--message-bytes must be >= 1 and --total-bytes >= --message-bytes")
    publisher(a) if a.role == "pub" else subscriber(a)


if __name__ == "__main__":
    main()
