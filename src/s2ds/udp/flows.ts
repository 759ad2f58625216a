// A UDP stream's flows: one per sender (address and port) per listener, as a UDP proxy
// keeps them. A flow carries the sender's datagrams to its listener's target and the
// replies back to that sender only; it ends after --udp-idle-timeout without a datagram
// either way. Flows per listener are bounded (--max-udp-flows): a new sender over the
// bound is dropped (flow-limit), never queued.
import type { RemoteInfo } from 'node:dgram';

export interface Flow {
  readonly id: number;
  readonly listenerIndex: number;
  readonly address: string;
  readonly port: number;
  /** Reply bytes handed to the listener's send, not yet sent. */
  inFlight: number;
  /** When a datagram last passed, either way (ms, Date.now()). */
  lastSeen: number;
}

export class FlowTable {
  /** By listener, then sender address, then port: no key is built per datagram. */
  private readonly bySender: Map<string, Map<number, Flow>>[];
  private readonly byId = new Map<number, Flow>();
  private readonly perListener: number[];
  /**
   * Flow ids: id % listeners === the listener index, the smallest free one first, reused
   * once their flow ended (as the WAN carrier's FlowIds: a flow rides WAN connection
   * id % n and reaches listener i's target on the far side).
   */
  private readonly freeIds: number[][];
  private readonly nextId: number[];

  constructor(listeners: number, private readonly maxPerListener: number) {
    this.perListener = new Array<number>(listeners).fill(0);
    this.freeIds = Array.from({ length: listeners }, () => []);
    this.nextId = Array.from({ length: listeners }, (_, i) => i);
    this.bySender = Array.from({ length: listeners }, () => new Map<string, Map<number, Flow>>());
  }

  get size(): number {
    return this.byId.size;
  }

  /** The sender's flow on this listener; a new one if there is room, else undefined. */
  flowOf(listenerIndex: number, from: RemoteInfo, now: number): { flow: Flow; opened: boolean } | undefined {
    const ports = this.bySender[listenerIndex]!.get(from.address);
    const known = ports?.get(from.port);
    if (known) {
      known.lastSeen = now;
      return { flow: known, opened: false };
    }
    if (this.perListener[listenerIndex]! >= this.maxPerListener) return undefined;
    const id = this.freeIds[listenerIndex]!.pop() ?? this.takeNext(listenerIndex);
    const flow: Flow = { id, listenerIndex, address: from.address, port: from.port, inFlight: 0, lastSeen: now };
    if (ports) ports.set(from.port, flow);
    else this.bySender[listenerIndex]!.set(from.address, new Map([[from.port, flow]]));
    this.byId.set(flow.id, flow);
    this.perListener[listenerIndex]!++;
    return { flow, opened: true };
  }

  byFlowId(id: number): Flow | undefined {
    return this.byId.get(id);
  }

  /** Forgets a flow; false if it was not known (already ended). */
  remove(id: number): boolean {
    const flow = this.byId.get(id);
    if (!flow) return false;
    this.byId.delete(id);
    const byAddress = this.bySender[flow.listenerIndex]!;
    const ports = byAddress.get(flow.address);
    ports?.delete(flow.port);
    if (ports?.size === 0) byAddress.delete(flow.address);
    this.perListener[flow.listenerIndex]!--;
    this.freeIds[flow.listenerIndex]!.push(id);
    return true;
  }

  private takeNext(listenerIndex: number): number {
    const id = this.nextId[listenerIndex]!;
    this.nextId[listenerIndex] = id + this.perListener.length;
    return id;
  }

  /** Flows that saw nothing since `before`. */
  idle(before: number): Flow[] {
    const out: Flow[] = [];
    for (const f of this.byId.values()) if (f.lastSeen < before) out.push(f);
    return out;
  }

  ids(): number[] {
    return [...this.byId.keys()];
  }
}
