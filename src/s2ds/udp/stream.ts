// A UDP stream on a data server: its UDP listeners (one per TCP listener, same ports),
// its flows, and the carrier that takes their datagrams towards the targets (plain UDP
// here; the WAN engineer's TLS carrier plugs in through DatagramCarrier). Nothing is
// buffered without bound: a datagram that does not fit is dropped and counted.
import type { RemoteInfo } from 'node:dgram';
import { formatAddress, type Address } from '../../protocol/address.js';
import type { AllowList } from '../../protocol/cidr.js';
import type { DatagramCarrier } from '../../transport/datagrams-carrier.js';
import type { StreamPacing } from '../pacer.js';
import type { InFlight } from './budget.js';
import { DatagramCounters, MAX_DATAGRAM, type DropCause, type DropTotals } from './counters.js';
import { FlowTable, type Flow } from './flows.js';
import { UdpListener } from './listener.js';
import { TargetSenders } from './loop-guard.js';
import { PlainUdpCarrier } from './plain-carrier.js';

export interface UdpStreamOptions {
  maxFlowsPerListener: number;
  idleTimeoutMs: number;
  maxQueuedPerFlow: number;
  server: InFlight;
  /** The data server's drops over all streams. */
  totals: DropTotals;
  bufferSize: number;
}

export interface UdpStreamStats {
  datagramsToTarget: number;
  datagramsFromTarget: number;
  bytesToTarget: number;
  bytesFromTarget: number;
  drops: { cause: DropCause; count: number }[];
  flows: number;
  flowsOpened: number;
}

export class UdpStream {
  readonly counters: DatagramCounters;
  private readonly flows: FlowTable;
  private listeners: UdpListener[] = [];
  private carrier: DatagramCarrier | undefined;
  /** The targets the plain carrier goes to (formatted), so that a repeated setTargets keeps the flows. */
  private plainTo: string | undefined;
  /** The targets as senders: their datagrams are dropped (loop-guard.ts). */
  private targetSenders: TargetSenders | undefined;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;
  /**
   * Producer side of an encrypted WAN leg (acceptFrom): the flows that come through the
   * WAN carrier, with when each last saw a datagram; the UDP listeners take nothing then.
   */
  private bridged: { wan: DatagramCarrier; plain: PlainUdpCarrier; flows: Map<number, number> } | undefined;

  constructor(
    readonly uid: string,
    count: number,
    private readonly opts: UdpStreamOptions,
    private readonly pacing: StreamPacing | undefined,
    private readonly allow: () => AllowList | undefined,
  ) {
    this.counters = new DatagramCounters(opts.totals);
    this.flows = new FlowTable(count, opts.maxFlowsPerListener);
    // A quarter of the timeout: a flow ends between 1 and 1.25 timeouts after its last datagram.
    this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.floor(opts.idleTimeoutMs / 4)));
    this.sweeper.unref();
  }

  /** Binds a UDP socket on each port (the stream's TCP listeners' ports, in order); all or none. */
  async bind(host: string, ports: readonly number[]): Promise<void> {
    try {
      for (const [i, port] of ports.entries()) {
        this.listeners.push(await UdpListener.bind(host, port, (d, from) => this.fromSender(i, d, from), this.opts.bufferSize, this.opts.server, (cause) => this.counters.drop(cause)));
      }
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /**
   * Where listener i's flows go: targets[i % n]. With a carrier given (the TLS WAN leg),
   * it carries them; else each flow gets its own plain UDP socket towards its target.
   */
  setTargets(targets: Address[], carrier?: DatagramCarrier): void {
    // A repeated UpdateTargets with the same targets changes nothing: the flows go on.
    const key = targets.map(formatAddress).join(',');
    if (!carrier && this.carrier && this.plainTo === key) return;
    this.plainTo = carrier ? undefined : key;
    this.targetSenders?.close();
    this.targetSenders = new TargetSenders(targets);
    const previous = this.carrier;
    this.carrier =
      carrier ??
      new PlainUdpCarrier({
        targetOf: (id) => targets[this.flows.byFlowId(id)!.listenerIndex % targets.length]!,
        perFlowLimit: this.opts.maxQueuedPerFlow,
        server: this.opts.server,
        bufferSize: this.opts.bufferSize,
        dropped: (cause) => this.counters.drop(cause),
      });
    this.carrier.onDatagram((id, d) => this.fromTarget(id, d));
    this.carrier.onFlowEnd((id) => this.flows.remove(id));
    // Flows opened towards the old targets end with them: their senders' next datagrams open new ones.
    if (previous) {
      for (const id of this.flows.ids()) this.flows.remove(id);
      previous.close();
    }
  }

  /**
   * The producer side of an encrypted WAN leg: datagrams arrive only through `wan` (the
   * stream's TLS connections, transport/datagrams.ts), each of its flows gets its own plain
   * socket towards `targetOf(flow)`, and the target's replies go back through `wan`. What
   * arrives in plain on the UDP listeners is dropped (no-flow): it proved no credentials.
   */
  acceptFrom(wan: DatagramCarrier, targetOf: (flow: number) => Address): void {
    const c = this.counters;
    const flows = new Map<number, number>();
    const plain = new PlainUdpCarrier({ targetOf, perFlowLimit: this.opts.maxQueuedPerFlow, server: this.opts.server, bufferSize: this.opts.bufferSize, dropped: (cause) => c.drop(cause) });
    const bound = this.opts.maxFlowsPerListener * Math.max(1, this.listeners.length);
    this.bridged?.plain.close();
    this.bridged = { wan, plain, flows };
    wan.onDatagram((flow, datagram) => {
      if (this.closed) return;
      if (datagram.length > MAX_DATAGRAM) return c.drop('too-large');
      const pacer = this.pacing?.toTarget;
      if (pacer && pacer.wait() > 0) return c.drop('rate-cap');
      if (!flows.has(flow)) {
        if (flows.size >= bound) return c.drop('flow-limit');
        c.flowsOpened++;
      }
      flows.set(flow, Date.now());
      if (!plain.send(flow, datagram)) return c.drop('queue-full');
      pacer?.spend(datagram.length);
      c.datagramsToTarget++;
      c.bytesToTarget += datagram.length;
    });
    plain.onDatagram((flow, datagram) => {
      if (this.closed || !flows.has(flow)) return c.drop('no-flow');
      const pacer = this.pacing?.fromTarget;
      if (pacer && pacer.wait() > 0) return c.drop('rate-cap');
      flows.set(flow, Date.now());
      if (!wan.send(flow, datagram)) return c.drop(wan.lastDrop ?? 'queue-full');
      pacer?.spend(datagram.length);
      c.datagramsFromTarget++;
      c.bytesFromTarget += datagram.length;
    });
    wan.onFlowEnd((flow) => {
      flows.delete(flow);
      plain.endFlow(flow);
    });
    plain.onFlowEnd((flow) => {
      if (flows.delete(flow)) wan.endFlow(flow);
    });
  }

  private fromSender(listenerIndex: number, datagram: Buffer, from: RemoteInfo): void {
    const c = this.counters;
    if (this.closed) return;
    if (this.bridged) return c.drop('no-flow');
    const allow = this.allow();
    if (allow && !allow.allows(from.address)) return c.drop('allow-list');
    if (datagram.length > MAX_DATAGRAM) return c.drop('too-large');
    const carrier = this.carrier;
    if (!carrier) return c.drop('no-flow');
    if (this.targetSenders?.has(from.address, from.port)) return c.drop('loop');
    const pacer = this.pacing?.toTarget;
    // A datagram cannot wait for the bucket as a TCP read does: over the cap it is dropped.
    if (pacer && pacer.wait() > 0) return c.drop('rate-cap');
    const found = this.flows.flowOf(listenerIndex, from, Date.now());
    if (!found) return c.drop('flow-limit');
    if (found.opened) c.flowsOpened++;
    if (!carrier.send(found.flow.id, datagram)) return c.drop(carrier.lastDrop ?? 'queue-full');
    pacer?.spend(datagram.length);
    c.datagramsToTarget++;
    c.bytesToTarget += datagram.length;
  }

  private fromTarget(id: number, datagram: Buffer): void {
    const c = this.counters;
    const flow = this.flows.byFlowId(id);
    if (!flow || this.closed) return c.drop('no-flow');
    if (datagram.length > MAX_DATAGRAM) return c.drop('too-large');
    const pacer = this.pacing?.fromTarget;
    if (pacer && pacer.wait() > 0) return c.drop('rate-cap');
    flow.lastSeen = Date.now();
    const listener = this.listeners[flow.listenerIndex]!;
    if (!listener.reply(datagram, flow.port, flow.address, flow, this.opts.maxQueuedPerFlow)) return c.drop('queue-full');
    pacer?.spend(datagram.length);
    c.datagramsFromTarget++;
    c.bytesFromTarget += datagram.length;
  }

  private sweep(): void {
    const before = Date.now() - this.opts.idleTimeoutMs;
    for (const f of this.flows.idle(before)) this.end(f);
    const b = this.bridged;
    if (!b) return;
    for (const [flow, last] of b.flows) {
      if (last >= before) continue;
      b.flows.delete(flow);
      b.plain.endFlow(flow);
      b.wan.endFlow(flow);
    }
  }

  private end(flow: Flow): void {
    if (this.flows.remove(flow.id)) this.carrier?.endFlow(flow.id);
  }

  stats(): UdpStreamStats {
    const c = this.counters;
    return {
      datagramsToTarget: c.datagramsToTarget,
      datagramsFromTarget: c.datagramsFromTarget,
      bytesToTarget: c.bytesToTarget,
      bytesFromTarget: c.bytesFromTarget,
      drops: c.dropCounts(),
      flows: this.flowCount,
      flowsOpened: c.flowsOpened,
    };
  }

  get flowCount(): number {
    return this.flows.size + (this.bridged?.flows.size ?? 0);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    this.targetSenders?.close();
    this.carrier?.close();
    this.bridged?.plain.close();
    this.bridged?.wan.close();
    await Promise.all(this.listeners.map((l) => l.close()));
    this.listeners = [];
  }
}
