// A UDP stream's encrypted WAN leg on one gateway (docs/protocol.md, "UDP streams"):
// the consumer gateway dials the producer gateway's listeners (UdpWanDialer), the
// producer gateway takes the connections its listeners accept (UdpWanAcceptor). What
// goes wrong on the leg is counted where a TCP stream's WAN leg counts it: failed
// handshakes and dials as refusals, lost connections as WAN breaks.
import type { Socket } from 'node:net';
import { formatAddress, type Address } from '../../protocol/address.js';
import type { WanBreakCause } from '../liveness.js';
import type { RefusalKind } from '../../limits/refusals.js';
import type { Transport } from '../../transport/index.js';
import { UdpWanAcceptor, UdpWanDialer, listenerOf, type AcceptedConnection, type UdpWanOptions } from './wan.js';
import type { UdpStream } from './stream.js';

export interface UdpWanLegHooks {
  refused(kind: RefusalKind, message: string): void;
  broken(peer: string, cause: WanBreakCause, detail: string): void;
}

export type UdpWanLeg = { side: 'connect'; key: string; dialer: UdpWanDialer } | { side: 'accept'; key: string; acceptor: UdpWanAcceptor };

/** Consumer gateway: the stream's flows ride TLS connections to `targets` (the producer gateway's listeners). */
export function dialLeg(udp: UdpStream, transport: Transport, targets: Address[], options: UdpWanOptions, hooks: UdpWanLegHooks): UdpWanLeg {
  const peers = targets.map(formatAddress);
  const dialer = new UdpWanDialer(transport, targets, {
    ...options,
    droppedIncoming: (cause) => udp.counters.drop(cause),
    onProblem: (i, problem) => report(hooks, peers[i] ?? '?', problem, 'target-unreachable'),
  });
  udp.setTargets(targets, dialer.carrier);
  return { side: 'connect', key: peers.join(','), dialer };
}

/**
 * Producer gateway: connections accepted on the stream's listener i that prove the
 * stream's credentials carry its flows; flow f goes to targets[listener(f) % n].
 */
export function acceptLeg(udp: UdpStream, transport: Transport, listeners: number, targets: Address[], options: UdpWanOptions, hooks: UdpWanLegHooks): UdpWanLeg {
  const acceptor = new UdpWanAcceptor(transport, listeners, {
    ...options,
    droppedIncoming: (cause) => udp.counters.drop(cause),
    onProblem: (i, problem) => report(hooks, `listener ${i}`, problem, 'wan-auth'),
  });
  const leg: UdpWanLeg = { side: 'accept', key: '', acceptor };
  retarget(leg, udp, targets);
  return leg;
}

/** New targets for an accepting leg: the flows towards the old ones end (the senders' next datagrams open new ones). */
export function retarget(leg: UdpWanLeg & { side: 'accept' }, udp: UdpStream, targets: Address[]): void {
  const key = targets.map(formatAddress).join(',');
  if (leg.key === key) return;
  leg.key = key;
  const n = leg.acceptor.connections;
  udp.acceptFrom(leg.acceptor.carrier, (flow) => targets[listenerOf(flow, n) % targets.length]!);
}

export function acceptInto(leg: UdpWanLeg & { side: 'accept' }, listenerIndex: number, raw: Socket, outcome: AcceptedConnection): void {
  leg.acceptor.accept(listenerIndex, raw, outcome);
}

export function closeLeg(leg: UdpWanLeg | undefined): void {
  if (!leg) return;
  if (leg.side === 'connect') leg.dialer.close();
  else leg.acceptor.close();
}

// The carrier and the dialer/acceptor name the problem in words (wan.ts, transport/datagrams.ts).
function report(hooks: UdpWanLegHooks, peer: string, problem: string, refusal: RefusalKind): void {
  // The other gateway released the stream or stopped: nothing broke.
  if (problem === 'the peer ended the connection') return;
  if (problem.startsWith('refused a WAN connection') || problem.startsWith('cannot open')) {
    hooks.refused(refusal, `${peer}: ${problem}`);
    return;
  }
  hooks.broken(peer, breakCause(problem), problem);
}

function breakCause(problem: string): WanBreakCause {
  if (problem.startsWith('malformed')) return 'malformed';
  if (problem.startsWith('nothing received')) return 'dead-peer';
  if (problem.includes('without END') || problem.includes('truncated')) return 'unended';
  if (problem.includes('ECONNRESET') || problem.includes('closed')) return 'reset';
  return 'error';
}
