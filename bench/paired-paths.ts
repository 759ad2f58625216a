// Paths to two targets at once, through the same forwarding processes: the contenders of the
// first-byte rows (the producer, and an iperf3 server for another stream at full speed beside
// it) and of the ZeroMQ rows (the publisher's PUB port and its REP sync port).
//   direct            straight to each target
//   one plain hop     S2DS (s2uc inbound-request): one stream, a listener per target
//   two TLS gateways  SciStream: two streams on the same two gateways (s2uc request + s2app hello each);
//                     stunnel: one pair, a service per target
import { mkdirSync } from 'node:fs';
import { gatewayPair, s2dsHop, STUNNEL, streamThrough, stunnel, workersLabel, type Group, type Target } from './contenders.js';

export interface PairedPath {
  name: string;
  group: Group;
  /** Where a client connects to reach each target, in the targets' order. */
  ports: [number, number];
  /** The forwarding processes now, for CPU time. */
  pids: () => number[];
}

export function directPair(targets: [Target, Target]): PairedPath {
  return { name: 'direct TCP', group: 'direct', ports: [targets[0].port, targets[1].port], pids: () => [] };
}

/** One S2DS hop: one stream, a listener per target (in the targets' order). */
export async function hopPair(targets: [Target, Target], dir: string, workers: number): Promise<PairedPath> {
  const hop = await s2dsHop(targets, dir, workers, { name: `S2DS (${workersLabel(workers)})` });
  return { name: hop.name, group: 'hop', ports: [hop.ports[0]!, hop.ports[1]!], pids: hop.pids };
}

export const OURS_TLS = (workers: number) => `SciStream (2 x S2DS, TLS, ${workersLabel(workers)} each)`;

/** Two gateways (separate s2cs processes) and one stream per target through them. */
export async function scistreamPair(targets: [Target, Target], dir: string, workers: number): Promise<PairedPath> {
  mkdirSync(dir, { recursive: true });
  const gw = await gatewayPair(dir, workers);
  const first = await streamThrough(gw, targets[0], 1);
  const second = await streamThrough(gw, targets[1], 1);
  return { name: OURS_TLS(workers), group: 'tls', ports: [first, second], pids: () => [...gw.prod.pids(), ...gw.cons.pids()] };
}

/** One stunnel pair (TLS 1.3, mutual pinned certificates), a service per target. */
export async function stunnelPair(targets: [Target, Target], dir: string): Promise<PairedPath> {
  mkdirSync(dir, { recursive: true });
  const st = await stunnel(targets[0], dir, [targets[1]]);
  return { name: STUNNEL, group: 'tls', ports: [st.ports[0]!, st.alsoPorts[0]!], pids: st.pids };
}
