// Whether the open-files limit (RLIMIT_NOFILE) lets a forwarding process hold what its
// other bounds admit. Past the limit, accept() and connect() fail with EMFILE, and a data
// connection is reset as target-unreachable: measured at `ulimit -n 256`, 168 of 400
// connections. Node cannot raise the limit itself (no setrlimit), so start-up warns.
import { readFileSync } from 'node:fs';
import { connectionMemory } from '../s2ds/buffers.js';
import { formatBytes } from '../units.js';

/** The soft and hard limit on open files of this process (from /proc/self/limits); undefined where unknown or unlimited. */
export function nofileLimit(limitsText?: string): { soft: number; hard: number | undefined } | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined;
    }
  }
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  if (!m || m[1] === 'unlimited') return undefined;
  return { soft: Number(m[1]), hard: m[2] === 'unlimited' ? undefined : Number(m[2]) };
}

export interface DescriptorBounds {
  /** Ports of the port range this process's listeners are taken from. */
  ports: number;
  /** Processes the range and the buffer budget are split over (local workers; 1 when forwarding in one process). */
  processes: number;
  /** Connections one stream may ask for (s2cs --max-conn); 0 where the process does not decide it (s2ds). */
  maxConn: number;
  maxConnsPerListener: number;
  maxBufferMemory: number;
  bufferSize: number;
  /** Connections not yet authenticated that the process may hold besides (--max-pending-conns); one descriptor each. */
  pendingConns?: number;
}

/** Descriptors a process keeps for its control port, agent link, logs, and Node itself. */
export const BASE_DESCRIPTORS = 64;

/**
 * What one forwarding process may need: BASE_DESCRIPTORS, one per data listener, and two
 * per data connection (the accepted socket and the one it opens onwards), for as many
 * connections as its bounds admit: its share of the buffer budget over the smallest
 * reservation (plain to plain), at most its listeners times --max-conns-per-listener;
 * and one per pending (unauthenticated) connection it may hold.
 * `oneStream`: the same for a single stream of --max-conn connections.
 */
export function descriptorNeed(b: DescriptorBounds): { need: number; conns: number; listeners: number; byMemory: number; oneStream: number } {
  const listeners = Math.ceil(b.ports / b.processes);
  const byMemory = Math.floor(b.maxBufferMemory / b.processes / connectionMemory(b.bufferSize, 'tcp', 'tcp'));
  const conns = Math.min(byMemory, listeners * b.maxConnsPerListener);
  return {
    need: BASE_DESCRIPTORS + listeners + 2 * conns + (b.pendingConns ?? 0),
    conns,
    listeners,
    byMemory,
    oneStream: BASE_DESCRIPTORS + Math.min(b.maxConn, listeners) + 2 * b.maxConn,
  };
}

/** A warning with the numbers when the soft open-files limit is below descriptorNeed; undefined when it is enough or unknown. */
export function nofileWarning(b: DescriptorBounds, limit = nofileLimit()): string | undefined {
  if (!limit) return undefined;
  const n = descriptorNeed(b);
  if (limit.soft >= n.need) return undefined;
  const who = b.processes > 1 ? `each of the ${b.processes} workers` : 'this process';
  const stream = b.maxConn > 0 && limit.soft < n.oneStream ? `; not even one stream of --max-conn ${b.maxConn} connections fits (${n.oneStream} descriptors)` : '';
  const raise = limit.hard === undefined || limit.hard > limit.soft ? `raise it (ulimit -n ${n.need}, or LimitNOFILE=${n.need} in the systemd unit; the hard limit is ${limit.hard ?? 'unlimited'})` : `raise the hard limit too (LimitNOFILE=${n.need} in the systemd unit, or /etc/security/limits.conf)`;
  return (
    `the open-files limit (ulimit -n) is ${limit.soft}, below the ${n.need} descriptors ${who} may need` +
    `: ${BASE_DESCRIPTORS} for the control port, logs and links, ${n.listeners} data listeners, and 2 for each of ${n.conns} data connections` +
    ` (what --max-buffer-memory ${formatBytes(b.maxBufferMemory)} admits at --buffer-size ${formatBytes(b.bufferSize)}, ${formatBytes(connectionMemory(b.bufferSize, 'tcp', 'tcp'))} each, ${n.byMemory}; at most ${n.listeners} listeners x --max-conns-per-listener ${b.maxConnsPerListener})${b.pendingConns ? `, and ${b.pendingConns} pending connections (--max-pending-conns)` : ''}${stream}.` +
    ` Connections past the limit are reset (counted as target-unreachable); ${raise}, or lower --max-buffer-memory or the port range`
  );
}
