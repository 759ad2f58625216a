// What the gateway's agents report, summed over them (AgentPool's status, /metrics
// and placement read these): each agent's figures are as of its last Health answer.
import type { AgentHandle, DatagramStats } from './index.js';

/** Pending data connections on every agent. */
export function pendingConnections(agents: readonly AgentHandle[]): number {
  let n = 0;
  for (const a of agents) n += a.health()?.pendingConnections ?? 0;
  return n;
}

/** What the agents refused (counted in their own processes), by kind. */
export function refusals(agents: readonly AgentHandle[]): { kind: string; count: number }[] {
  const sums = new Map<string, number>();
  for (const a of agents) for (const r of a.health()?.refusals ?? []) sums.set(r.kind, (sums.get(r.kind) ?? 0) + r.count);
  return [...sums].map(([kind, count]) => ({ kind, count }));
}

/** Framed WAN connections that broke on the agents, by cause. */
export function wanBreaks(agents: readonly AgentHandle[]): { cause: string; count: number }[] {
  const sums = new Map<string, number>();
  for (const a of agents) for (const b of a.health()?.wanBreaks ?? []) sums.set(b.cause, (sums.get(b.cause) ?? 0) + b.count);
  return [...sums].map(([cause, count]) => ({ cause, count }));
}

/** Datagrams the agents dropped since they started, by cause, and their UDP flows open now. */
export function datagrams(agents: readonly AgentHandle[]): { drops: { cause: string; count: number }[]; flows: number } {
  const sums = new Map<string, number>();
  let flows = 0;
  for (const a of agents) {
    const h = a.health();
    for (const d of h?.datagramDrops ?? []) sums.set(d.cause, (sums.get(d.cause) ?? 0) + d.count);
    flows += h?.udpFlows ?? 0;
  }
  return { drops: [...sums].map(([cause, count]) => ({ cause, count })), flows };
}

/** Reserved over every agent; free over the agents that answer (a down agent's ports cannot be used). */
export function ports(agents: readonly AgentHandle[]): { reserved: number; free: number } {
  let reserved = 0;
  let free = 0;
  for (const a of agents) {
    const p = a.ports();
    // Spares belong to no stream: free for any request (it takes or gives them back).
    const spare = a.health()?.sparePorts ?? 0;
    reserved += Math.max(0, p.reserved - spare);
    if (a.up()) free += p.free + spare;
  }
  return { reserved, free };
}

export function bufferMemory(agents: readonly AgentHandle[]): { reserved: number; limit: number } {
  let reserved = 0;
  let limit = 0;
  for (const a of agents) {
    const m = a.bufferMemory();
    reserved += m.reserved;
    limit += m.limit;
  }
  return { reserved, limit };
}

/** Two agents' shares of a UDP stream's datagram counters, added. */
export function addDatagrams(a: DatagramStats | undefined, b: DatagramStats): DatagramStats {
  if (!a) return { ...b, drops: b.drops.map((d) => ({ ...d })) };
  const drops = new Map(a.drops.map((d) => [d.cause, d.count]));
  for (const d of b.drops) drops.set(d.cause, (drops.get(d.cause) ?? 0) + d.count);
  return {
    datagramsToTarget: a.datagramsToTarget + b.datagramsToTarget,
    datagramsFromTarget: a.datagramsFromTarget + b.datagramsFromTarget,
    drops: [...drops].map(([cause, count]) => ({ cause, count })),
    flows: a.flows + b.flows,
    flowsOpened: a.flowsOpened + b.flowsOpened,
  };
}
