// Taking streams back from the agents after an s2cs restart. Each agent keeps, with
// its share of a stream, s2cs's record of the stream behind a head that says which of
// the stream's listeners (global indices) the share holds, so that the listeners go
// back in the stream's order however they were spread over the agents.
import { parseAddress, type Address } from '../protocol/address.js';
import type { Share } from './pool-joins.js';
import type { AgentHandle, AgentStream } from './index.js';

/** A share's record before s2cs has stored its own (setRecord follows the answer). */
export const NO_RECORD = new Uint8Array();

/** "s2p1", u32 count, u32 n, n x u32 global index, then s2cs's record. */
const MAGIC = 0x73327031;

export function wrapRecord(count: number, indices: readonly number[], record: Uint8Array): Uint8Array {
  const head = Buffer.alloc(12 + 4 * indices.length);
  head.writeUInt32BE(MAGIC, 0);
  head.writeUInt32BE(count, 4);
  head.writeUInt32BE(indices.length, 8);
  indices.forEach((g, i) => head.writeUInt32BE(g, 12 + 4 * i));
  return Buffer.concat([head, record]);
}

export function unwrapRecord(bytes: Uint8Array): { count: number; indices: number[]; record: Uint8Array } | undefined {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 12 || b.readUInt32BE(0) !== MAGIC) return undefined;
  const count = b.readUInt32BE(4);
  const n = b.readUInt32BE(8);
  if (b.length < 12 + 4 * n || n > count) return undefined;
  const indices: number[] = [];
  for (let i = 0; i < n; i++) {
    const g = b.readUInt32BE(12 + 4 * i);
    if (g >= count) return undefined;
    indices.push(g);
  }
  return { count, indices, record: new Uint8Array(b.subarray(12 + 4 * n)) };
}

/** One agent's share of a stream, as it listed it. */
export interface ListedPart {
  agent: AgentHandle;
  stream: AgentStream;
}

/** The agents' answers to ListStreams, by stream, and the agents that did not answer. */
export function byStream(members: readonly AgentHandle[], answers: PromiseSettledResult<AgentStream[]>[]): { byUid: Map<string, ListedPart[]>; unanswered: string[] } {
  const unanswered: string[] = [];
  const byUid = new Map<string, ListedPart[]>();
  answers.forEach((r, i) => {
    const agent = members[i]!;
    if (r.status === 'rejected') {
      unanswered.push(agent.name);
      return;
    }
    for (const stream of r.value) {
      const list = byUid.get(stream.uid) ?? [];
      list.push({ agent, stream });
      byUid.set(stream.uid, list);
    }
  });
  return { byUid, unanswered };
}

/** A stream put back together from its parts. */
export interface ReadBack {
  count: number;
  /** Every listener in the stream's global order (a hole where a share is missing: see `complete`). */
  listeners: Address[];
  /** One per listener, in global order; empty before SetTargets reached every part. */
  targets: Address[];
  record: Uint8Array;
  encrypted: boolean;
  shares: Share[];
  /** The shares as status and the log show them. */
  described: { agent: string; address: string; indices: number[]; listeners: Address[] }[];
  /** Every listener was found on an agent that answered. */
  complete: boolean;
}

/**
 * One stream from the parts the agents listed. Parts without a head (an agent from
 * before shares were indexed) are taken in the order the agents are configured.
 */
export function readBack(parts: readonly ListedPart[]): ReadBack {
  const unwrapped = parts.map((p) => ({ ...p, rec: unwrapRecord(p.stream.record) }));
  const indexed = unwrapped.every((p) => p.rec && p.rec.indices.length === p.stream.listeners.length);
  let count: number;
  const shares: Share[] = [];
  if (indexed) {
    count = unwrapped[0]!.rec!.count;
    for (const p of unwrapped) shares.push({ agent: p.agent, indices: p.rec!.indices });
  } else {
    count = 0;
    for (const p of unwrapped) {
      shares.push({ agent: p.agent, indices: p.stream.listeners.map((_, j) => count + j) });
      count += p.stream.listeners.length;
    }
  }
  const listeners = new Array<Address>(count);
  const targets = new Array<Address>(count);
  let targetsSet = true;
  unwrapped.forEach((p, i) => {
    const idx = shares[i]!.indices;
    p.stream.listeners.forEach((l, j) => (listeners[idx[j]!] = parseAddress(l, 'listener')));
    if (p.stream.targets.length !== p.stream.listeners.length) targetsSet = false;
    else p.stream.targets.forEach((t, j) => (targets[idx[j]!] = parseAddress(t, 'target')));
  });
  return {
    count,
    listeners,
    targets: targetsSet ? targets : [],
    record: unwrapped.find((p) => p.rec)?.rec?.record ?? parts[0]!.stream.record,
    encrypted: parts.some((p) => p.stream.encrypted),
    shares,
    described: shares.map((s, i) => ({ agent: s.agent.name, address: s.agent.address, indices: s.indices, listeners: unwrapped[i]!.stream.listeners.map((l) => parseAddress(l, 'listener')) })),
    complete: listeners.filter(Boolean).length === count && count > 0,
  };
}
