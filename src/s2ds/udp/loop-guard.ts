// A UDP stream's own targets as senders. A datagram whose source is a target of the stream
// (its address and port; forged, or sent by the target itself) would open a flow towards
// that same target, whose reply the gateway sends back to the "sender", the target again,
// which answers it on the listener: with an echo-like service behind the stream, one forged
// datagram keeps the gateway and the target busy for ever, and the flow never idles out.
// Such datagrams are dropped (loop). Only exact address-and-port matches: a target never
// needs to reach itself through the stream, so no real sender is refused.
import { lookup } from 'node:dns/promises';
import { isIP, SocketAddress } from 'node:net';
import type { Address } from '../../protocol/address.js';

export class TargetSenders {
  /** By port, the addresses as a listener's socket reports its senders (IPv4 also as ::ffff:a.b.c.d). */
  private readonly byPort = new Map<number, Set<string>>();
  private closed = false;

  /** Names among the targets are resolved now; until they are, their addresses are not known. */
  constructor(targets: readonly Address[]) {
    for (const t of targets) {
      if (isIP(t.host)) this.add(t.host, t.port);
      else void this.resolve(t);
    }
  }

  /** Whether a datagram from address:port comes from one of the targets. No allocation: called per datagram. */
  has(address: string, port: number): boolean {
    return this.byPort.get(port)?.has(address) ?? false;
  }

  /** The targets changed: a resolution still under way adds nothing any more. */
  close(): void {
    this.closed = true;
  }

  private async resolve(t: Address): Promise<void> {
    try {
      for (const a of await lookup(t.host, { all: true })) if (!this.closed) this.add(a.address, t.port);
    } catch {
      // Not resolvable: the flows towards it fail to connect and end; nothing to guard.
    }
  }

  private add(host: string, port: number): void {
    const family = isIP(host) === 6 ? 'ipv6' : 'ipv4';
    // The listener's socket writes addresses canonically (::1, not 0:0:0:0:0:0:0:1).
    const address = new SocketAddress({ address: host, family }).address;
    let set = this.byPort.get(port);
    if (!set) this.byPort.set(port, (set = new Set()));
    set.add(address);
    // A dual-stack (udp6) listener sees an IPv4 sender as ::ffff:a.b.c.d.
    if (family === 'ipv4') set.add(`::ffff:${address}`);
    else if (/^::ffff:\d+\.\d+\.\d+\.\d+$/.test(address)) set.add(address.slice(7));
  }
}
