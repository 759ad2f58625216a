#!/usr/bin/env python3
"""A flood of UDP datagrams with forged source addresses, for test/e2e/udp-flood-netns.test.ts.

usage: udp_flood.py DST_IP DST_PORT SRC_NET DATAGRAMS [options]

Sends DATAGRAMS datagrams to DST_IP:DST_PORT, written as raw IPv4 packets (IPPROTO_RAW:
we write the IP header, the kernel fills in its checksum) with forged source addresses
from the /16 SRC_NET (e.g. 10.77):
- one-off sources, 10.77.0.1 onwards from --first-source, each with a random port, so that
  nearly every datagram looks like another sender; every --repeat-every'th sends a short
  burst from the same address and port instead of one;
- --steady sources (the last addresses of the /16) that speak first and then send one
  datagram in --steady-every all along, so that they hold flows and their datagrams are
  forwarded; one datagram in --large-every is a large one from them, near the 65,507-byte
  bound, sent as IP fragments (a raw packet cannot exceed the link's MTU);
- first, --as-target-count datagrams from --as-target (the stream's target, address and port);
- every --own-burst-every datagrams, a burst of --own-burst full-size (65,507-byte)
  datagrams from an ordinary socket with this host's own address (which also speaks first).
Datagrams go in bursts of --burst with --pause-ms between them. Runs as root (raw sockets).
Prints one JSON line: what was sent.
"""
import argparse
import json
import random
import socket
import struct
import sys
import time

MAX_DATAGRAM = 65507
# A fragment's payload must be a multiple of 8 bytes and fit a 1500-byte MTU with its 20-byte header.
FRAGMENT = 1480


def ip_header(src, dst, total, ident, frag_field):
    # Checksum 0: the kernel computes it for IPPROTO_RAW sockets.
    return struct.pack('!BBHHHBBH4s4s', 0x45, 0, total, ident, frag_field, 64, socket.IPPROTO_UDP, 0, src, dst)


def packets(src, sport, dst, dport, payload, ident):
    """The IP packets of one UDP datagram: one, or its fragments (UDP checksum 0: none, allowed over IPv4)."""
    segment = struct.pack('!HHHH', sport, dport, 8 + len(payload), 0) + payload
    if 20 + len(segment) <= 1500:
        return [ip_header(src, dst, 20 + len(segment), ident, 0) + segment]
    out = []
    for off in range(0, len(segment), FRAGMENT):
        chunk = segment[off:off + FRAGMENT]
        more = 0x2000 if off + FRAGMENT < len(segment) else 0
        out.append(ip_header(src, dst, 20 + len(chunk), ident, more | (off // 8)) + chunk)
    return out


def forged_address(net, index):
    """Source `index` of the /16: 10.77.0.1 .. 10.77.255.254 in turn (x.y.z.0 and .255 skipped)."""
    return f'{net[0]}.{net[1]}.{(index // 254) % 256}.{1 + index % 254}'


def main():
    p = argparse.ArgumentParser()
    p.add_argument('dst_ip')
    p.add_argument('dst_port', type=int)
    p.add_argument('src_net', help='the first two octets of the /16 the forged sources come from, e.g. 10.77')
    p.add_argument('datagrams', type=int)
    p.add_argument('--first-source', type=int, default=0, help='index of the first one-off source in the /16')
    p.add_argument('--burst', type=int, default=500, help='datagrams sent back to back before a pause')
    p.add_argument('--pause-ms', type=float, default=5.0)
    p.add_argument('--repeat-every', type=int, default=4, help='every Nth one-off source sends --repeat datagrams instead of one')
    p.add_argument('--repeat', type=int, default=5)
    p.add_argument('--steady', type=int, default=32, help='forged sources (the last ones of the /16) that send all along')
    p.add_argument('--steady-every', type=int, default=4, help='one datagram in N comes from a steady source')
    p.add_argument('--large-every', type=int, default=100, help='one datagram in N is a large one, from a steady source')
    p.add_argument('--own-burst-every', type=int, default=5000)
    p.add_argument('--own-burst', type=int, default=50)
    p.add_argument('--as-target', help='HOST:PORT, the stream\'s target: --as-target-count datagrams forged from it come first')
    p.add_argument('--as-target-count', type=int, default=0)
    p.add_argument('--seed', type=int, default=21)
    a = p.parse_args()

    rnd = random.Random(a.seed + a.first_source)
    dst = socket.inet_aton(a.dst_ip)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    own = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    full = bytes(MAX_DATAGRAM)
    net = [int(x) for x in a.src_net.split('.')]
    sent = {'datagrams': 0, 'forged': 0, 'large': 0, 'steady': 0, 'own': 0, 'as_target': 0, 'refused': 0}
    addresses = set()
    # The steady sources: the last addresses of the /16, each with one port.
    steady = [(socket.inet_aton(forged_address(net, 256 * 254 - 1 - i)), rnd.randrange(1024, 65536)) for i in range(a.steady)]
    ident = 0
    in_burst = 0

    def pace():
        nonlocal in_burst
        in_burst += 1
        if in_burst >= a.burst:
            in_burst = 0
            time.sleep(a.pause_ms / 1000)

    def send(src, sport, payload):
        nonlocal ident
        ident = ident % 65535 + 1
        for pkt in packets(src, sport, dst, a.dst_port, payload, ident):
            try:
                raw.sendto(pkt, (a.dst_ip, 0))
            except OSError:
                # ENOBUFS when the device queue is full: a flood loses some; count and go on.
                sent['refused'] += 1
                return
        sent['forged'] += 1

    def small():
        return rnd.randbytes(rnd.randrange(16, 1400))

    def own_send(payload):
        try:
            own.sendto(payload, (a.dst_ip, a.dst_port))
            sent['own'] += 1
        except OSError:
            sent['refused'] += 1

    started = time.time()
    if a.as_target:
        # From the target itself: forwarded, its echo would come back to the listener from the target, for ever.
        host, port = a.as_target.rsplit(':', 1)
        for _ in range(a.as_target_count):
            send(socket.inet_aton(host), int(port), small())
            sent['as_target'] += 1
    # The steady sources and this host's own address speak first, so that they hold flows.
    for src, sport in steady:
        send(src, sport, small())
    own_send(small())
    source = a.first_source
    turn = 0
    while sent['datagrams'] < a.datagrams:
        src_text = forged_address(net, source)
        source += 1
        addresses.add(src_text)
        src = socket.inet_aton(src_text)
        sport = rnd.randrange(1024, 65536)
        for _ in range(a.repeat if len(addresses) % a.repeat_every == 0 else 1):
            n = sent['datagrams']
            if n % a.large_every == a.large_every - 1 or n % a.steady_every == a.steady_every - 1:
                # From a steady source: a large one near the bound (as fragments), or a small one.
                ssrc, sport_ = steady[turn % len(steady)]
                turn += 1
                large = n % a.large_every == a.large_every - 1
                send(ssrc, sport_, bytes(rnd.randrange(MAX_DATAGRAM - 2000, MAX_DATAGRAM + 1)) if large else small())
                sent['large' if large else 'steady'] += 1
            else:
                send(src, sport, small())
            sent['datagrams'] += 1
            pace()
            if a.own_burst_every and sent['datagrams'] % a.own_burst_every == 0:
                for _ in range(a.own_burst):
                    own_send(full)
    sent['addresses'] = len(addresses) + len(steady)
    sent['seconds'] = round(time.time() - started, 2)
    print(json.dumps(sent))
    sys.stdout.flush()


if __name__ == '__main__':
    main()
