// `s2uc status`: what one or more gateways hold, for humans and for scripts. The
// library functions return the same camelCase shape that `--json` prints.
import type { ConnectionOptions, StatusResponse } from '../protocol/client.js';
import { validateUid } from '../protocol/validate.js';
import { oneLine } from '../protocol/text.js';
import { formatBitRate, formatBytes, formatRate } from '../units.js';
import { withServers } from './flows.js';

/** One stream on one gateway. Byte counts and rates are numbers (grpc-js hands uint64 over as strings). */
export interface StreamStatusRow {
  uid: string;
  role: string;
  numConn: number;
  /** As stated in the request: kB/s (1 kB = 1,000 bytes), 0 when not stated. */
  rate: number;
  /** Bytes per second the gateway holds the stream to, each way; 0: not capped there. */
  capBps: number;
  /** reserving | awaiting-hello | awaiting-update | ready | broken | releasing */
  state: string;
  /** While releasing: the agents that have not confirmed their part, and what they may still forward. */
  releasingOn?: string[];
  /** State broken: why (its connections ended abnormally and none is open); '' otherwise. */
  brokenReason: string;
  /** Seconds until the gateway lets the stream go by itself (its lifetime, idle or broken); 0: none. */
  expiresInS: number;
  owner: string;
  /** Seconds since the stream's req. */
  ageS: number;
  /** Seconds until the gateway releases the stream for want of UpdateTargets; 0 once they came. */
  leaseRemainingS: number;
  listeners: string[];
  prodListeners: string[];
  targets: string[];
  bytesToTarget: number;
  bytesFromTarget: number;
  /** Bytes per second, averaged over the last 10 s. */
  toTargetBps: number;
  fromTargetBps: number;
  activeConnections: number;
  waitingConnections: number;
  acceptedConnections: number;
  refusedConnections: number;
  /** Listeners and targets left out: the gateway checks no tokens and the stream is not shown to be the caller's. */
  redacted: boolean;
  /** A standing tunnel of the gateway's configuration file ([[tunnel]]): only a reload changes or releases it. */
  standing?: boolean;
  /** Who may connect to its listeners (CIDRs, as the gateway enforces them); empty: the gateway's bound only. */
  allowFrom?: string[];
  /** Its last connections that ended (at most 10, oldest first), as the gateway's access log wrote them. */
  recentConnections?: RecentConnectionRow[];
  /** tcp | udp (a gateway from before UDP streams, or the reference, says nothing: tcp). */
  protocol?: 'tcp' | 'udp';
  /** UDP streams: datagrams each way, drops by cause, flows open now and opened. */
  datagrams?: DatagramRow;
}

export interface DatagramRow {
  toTarget: number;
  fromTarget: number;
  drops: Record<string, number>;
  flows: number;
  flowsOpened: number;
}

/** One data connection of a stream that ended (ConnectionRecord). */
export interface RecentConnectionRow {
  listener: string;
  /** lan | wan */
  leg: string;
  peer: string;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  /** clean | reset-by-peer | reset-by-target | refused:<kind> | wan-broken:<cause> | released | shutdown | ... */
  end: string;
  /** ms since the Unix epoch (the gateway's clock). */
  endedAtMs: number;
}

/** A data-server agent behind a gateway (shown to its admins, or to all with --auth none). */
export interface AgentStatusRow {
  name: string;
  address: string;
  listenerIp: string;
  up: boolean;
  streams: number;
  freePorts: number;
  bytesPerSecond: number;
}

export interface GatewayStatus {
  s2cs: string;
  reservedPorts: number;
  freePorts: number;
  /** What stated rates mean on this gateway: none, cap or reserve (--rate-policy). */
  ratePolicy: string;
  /** With reserve: what streams are admitted against, and what the live ones take of it (bytes per second). */
  capacityBps: number;
  reservedBps: number;
  streams: StreamStatusRow[];
  /** What the gateway refused since it started, by kind. */
  refusals: Record<string, number>;
  agents: AgentStatusRow[];
  /** Streams the gateway ended by itself lately (lease over, no Hello, agent died...), with why. */
  ended: { uid: string; owner: string; why: string; agoS: number }[];
}

/** A gateway that could not be asked. */
export interface GatewayFailure {
  s2cs: string;
  error: string;
}

export interface StatusReport {
  /** In the order the gateways were given. */
  gateways: (GatewayStatus | GatewayFailure)[];
}

export function isFailure(g: GatewayStatus | GatewayFailure): g is GatewayFailure {
  return 'error' in g;
}

/** uint64 fields arrive as decimal strings; the counts stay far below 2^53. */
function num(v: string | number | undefined): number {
  const n = Number(v ?? 0);
  return Number.isFinite(n) ? n : 0;
}

/** The wire answer (snake_case, uint64 as strings) as the typed camelCase object. */
export function toGatewayStatus(s2cs: string, r: StatusResponse): GatewayStatus {
  return {
    s2cs,
    reservedPorts: num(r.reserved_ports),
    freePorts: num(r.free_ports),
    // A gateway from before rate policies (or the reference) sends none of these.
    ratePolicy: r.rate_policy || 'none',
    capacityBps: num(r.capacity_bps),
    reservedBps: num(r.reserved_bps),
    streams: r.streams.map((s) => ({
      uid: s.uid,
      role: s.role,
      numConn: num(s.num_conn),
      rate: num(s.rate),
      capBps: num(s.cap_bps),
      state: s.state,
      releasingOn: s.releasing_on ?? [],
      // A gateway from before stream lifetimes (or the reference) sends neither.
      brokenReason: oneLine(s.broken_reason ?? ''),
      expiresInS: num(s.expires_in_s),
      owner: s.owner,
      ageS: num(s.age_s),
      leaseRemainingS: num(s.lease_remaining_s),
      listeners: s.listeners,
      prodListeners: s.prod_listeners,
      targets: s.targets,
      bytesToTarget: num(s.bytes_to_target),
      bytesFromTarget: num(s.bytes_from_target),
      toTargetBps: num(s.to_target_bps),
      fromTargetBps: num(s.from_target_bps),
      activeConnections: num(s.active_connections),
      waitingConnections: num(s.waiting_connections),
      acceptedConnections: num(s.accepted_connections),
      refusedConnections: num(s.refused_connections),
      redacted: s.redacted === true,
      standing: s.standing === true,
      allowFrom: (s.allow_from ?? []).map(oneLine),
      protocol: s.protocol === 'udp' ? 'udp' : 'tcp',
      ...(s.protocol === 'udp'
        ? {
            datagrams: {
              toTarget: num(s.datagrams_to_target),
              fromTarget: num(s.datagrams_from_target),
              drops: Object.fromEntries((s.datagram_drops ?? []).map((x) => [oneLine(x.kind), num(x.count)])),
              flows: num(s.udp_flows),
              flowsOpened: num(s.udp_flows_opened),
            },
          }
        : {}),
      // A gateway from before the access log (or the reference) sends none.
      recentConnections: (s.recent_connections ?? []).map((c) => ({
        listener: oneLine(c.listener),
        leg: oneLine(c.leg),
        peer: oneLine(c.peer),
        bytesIn: num(c.bytes_in),
        bytesOut: num(c.bytes_out),
        durationMs: num(c.duration_ms),
        end: oneLine(c.end),
        endedAtMs: num(c.ended_at_ms),
      })),
    })),
    refusals: Object.fromEntries(r.refusals.map((x) => [x.kind, num(x.count)])),
    agents: r.agents.map((a) => ({
      name: a.name,
      address: a.address,
      listenerIp: a.listener_ip,
      up: a.up,
      streams: num(a.streams),
      freePorts: num(a.free_ports),
      bytesPerSecond: num(a.bytes_per_second),
    })),
    ended: r.ended.map((e) => ({ uid: e.uid, owner: e.owner, why: e.why, agoS: num(e.ago_s) })),
  };
}

/** One gateway's streams (all, or the one with `uid`). Throws when the gateway cannot be asked. */
export async function streamStatus(server: string, uid: string | undefined, opts: ConnectionOptions): Promise<GatewayStatus> {
  if (uid !== undefined) validateUid(uid, 'uid');
  const r = await withServers([server], opts, ([c]) => c!.status({ uid: uid ?? '' }));
  return toGatewayStatus(server, r);
}

/**
 * Every gateway asked at once, each on its own connection: one that is down, or
 * whose TLS cannot open, is reported in its place and the others are still shown.
 */
export async function gatewaysStatus(servers: string[], uid: string | undefined, opts: ConnectionOptions): Promise<StatusReport> {
  if (uid !== undefined) validateUid(uid, 'uid');
  const results = await Promise.allSettled(servers.map((s) => streamStatus(s, uid, opts)));
  return {
    gateways: results.map((r, i) => (r.status === 'fulfilled' ? r.value : asFailure(servers[i]!, r.reason))),
  };
}

/** A gateway that could not be asked, in one line that names it whatever the error says. */
export function asFailure(s2cs: string, reason: unknown): GatewayFailure {
  const message = oneLine(reason instanceof Error ? reason.message : String(reason));
  return { s2cs, error: message.includes(s2cs) ? message : `s2cs at ${s2cs}: ${message}` };
}

/** "45s", "3m12s", "2h05m", "3d04h". */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const two = (n: number) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d${two(Math.floor((s % 86400) / 3600))}h`;
}

/** Bytes per second as bits: "812.50 Mbit/s", "9.41 Gbit/s". */
export function formatBps(bytesPerSecond: number): string {
  return formatRate(bytesPerSecond, 1);
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** A labelled line, the values aligned. */
const field = (label: string, value: string) => `    ${label.padEnd(13)}${value}\n`;

/** A stream's byte rates between two successive samples (s2uc status --watch). */
export interface SampledRates {
  toTargetBps: number;
  fromTargetBps: number;
  seconds: number;
}

/** One ended connection: when, leg, who to which listener, bytes each way, how long, how it ended. */
export function formatRecentConnection(c: RecentConnectionRow): string {
  const at = new Date(c.endedAtMs).toISOString().slice(11, 19);
  return `${at} ${c.leg} ${c.peer} -> ${c.listener}, in ${formatBytes(c.bytesIn)}, out ${formatBytes(c.bytesOut)}, ${(c.durationMs / 1000).toFixed(1)} s: ${c.end}`;
}

function formatStream(s: StreamStatusRow, sampled?: SampledRates, recent = 3): string {
  const head = [s.role, ...(s.protocol === 'udp' ? ['UDP'] : []), plural(s.numConn, s.protocol === 'udp' ? 'listener' : 'connection'), ...(s.standing ? ['standing tunnel of the gateway\'s configuration file'] : [])].join(', ');
  // The lease matters only until the connection map arrives: then the stream stays until released.
  let state = s.state === 'ready' || s.state === 'broken' || s.state === 'releasing' ? s.state : `${s.state}, lease ${formatAge(s.leaseRemainingS)} left`;
  if (s.state === 'broken' && s.brokenReason) state += `: ${s.brokenReason}`;
  let text = `  stream ${s.uid} (${head})\n`;
  text += field('state', state);
  // Released, but these agents have not confirmed: their connections may still forward.
  for (const [i, on] of (s.releasingOn ?? []).entries()) text += field(i === 0 ? 'not released' : '', on);
  // When the gateway lets it go by itself: the end of its lifetime, its idle deadline, or (broken) its grace.
  if (s.expiresInS > 0) text += field('expires', `in ${formatAge(s.expiresInS)}${s.state === 'broken' ? ' (released as broken)' : ''}`);
  text += field('age', formatAge(s.ageS));
  text += field('owner', s.owner);
  if (s.rate > 0 || s.capBps > 0) {
    // The stated rate, and whether this gateway holds the stream to it (--rate-policy).
    const held = s.capBps > 0 ? `held to ${formatBitRate(s.capBps)} each way` : 'not enforced by this gateway';
    text += field('rate', `${formatBitRate(s.rate * 1000)} stated (${s.rate} kB/s), ${held}`);
  }
  // Connections on listener i go to targets[i % targets.length] (as the data server forwards).
  const width = Math.max(0, ...s.listeners.map((l) => l.length));
  s.listeners.forEach((l, i) => {
    const target = s.targets.length > 0 ? s.targets[i % s.targets.length]! : '(no targets yet)';
    text += `    ${(i === 0 ? 'listeners' : '').padEnd(13)}${l.padEnd(width)} -> ${target}\n`;
  });
  if ((s.allowFrom ?? []).length > 0) text += field('allow from', s.allowFrom!.join(', '));
  if (s.redacted) text += field('listeners', "(hidden: not shown to be yours; this gateway checks no tokens, and s2uc shows a stream in full with its control secret or from the address that requested it)");
  else if (s.listeners.length === 0) text += field('listeners', '(not bound yet)');
  // Total so far, then the rate: the gateway's average over the last 10 s.
  // With --watch, also the rate between the last two samples: it follows a change at once.
  const since = (bps: number) => (sampled ? ` (10 s avg), ${formatBps(bps)} (last ${sampled.seconds.toFixed(1)} s)` : '');
  text += field('to target', `${formatBytes(s.bytesToTarget).padEnd(12)}${formatBps(s.toTargetBps)}${since(sampled?.toTargetBps ?? 0)}`);
  text += field('from target', `${formatBytes(s.bytesFromTarget).padEnd(12)}${formatBps(s.fromTargetBps)}${since(sampled?.fromTargetBps ?? 0)}`);
  text += field(
    'connections',
    `${s.activeConnections} active, ${s.waitingConnections} waiting, ${s.acceptedConnections} accepted, ${s.refusedConnections} refused`,
  );
  if (s.datagrams) {
    const d = s.datagrams;
    const drops = Object.entries(d.drops).map(([cause, n]) => `${n} ${cause}`);
    text += field('datagrams', `${d.toTarget} to target, ${d.fromTarget} from target; dropped: ${drops.length > 0 ? drops.join(', ') : 'none'}`);
    text += field('udp flows', `${d.flows} open, ${d.flowsOpened} opened`);
  }
  // The newest first; all of them (up to 10) for one stream, the last few in a list of streams.
  const shown = (s.recentConnections ?? []).slice(-recent).reverse();
  shown.forEach((c, i) => (text += field(i === 0 ? 'last ended' : '', formatRecentConnection(c))));
  return text;
}

/** One gateway for humans: a summary line, a block per stream, the refusals since start. */
export function formatGatewayStatus(g: GatewayStatus, sampled?: (s: StreamStatusRow) => SampledRates | undefined, recent = 3): string {
  let text = `gateway ${g.s2cs}: ${plural(g.streams.length, 'stream')}, ${plural(g.reservedPorts, 'port')} reserved, ${g.freePorts} free\n`;
  if (g.ratePolicy === 'reserve') text += `  rates: ${formatBitRate(g.reservedBps)} of ${formatBitRate(g.capacityBps)} reserved (--rate-policy reserve), ${formatBitRate(Math.max(0, g.capacityBps - g.reservedBps))} free\n`;
  else if (g.ratePolicy === 'cap') text += '  rates: each stream held to its stated rate (--rate-policy cap)\n';
  for (const s of g.streams) text += formatStream(s, sampled?.(s), recent);
  const refused = Object.entries(g.refusals).filter(([, n]) => n > 0);
  if (refused.length > 0) text += `  refused since start: ${refused.map(([kind, n]) => `${kind}=${n}`).join(' ')}\n`;
  for (const e of g.ended) text += `  ended by the gateway ${formatAge(e.agoS)} ago: ${e.uid} (owner ${e.owner}): ${e.why}\n`;
  for (const a of g.agents) {
    const where = a.listenerIp ? `, listeners on ${a.listenerIp}` : '';
    text += a.up
      ? `  agent ${a.name} (${a.address}${where}): up, ${plural(a.streams, 'stream')}, ${a.freePorts} free ports, ${formatRate(a.bytesPerSecond, 1)}\n`
      : `  agent ${a.name} (${a.address}${where}): DOWN, not answering; new streams avoid it\n`;
  }
  return text;
}

export interface StatusCommandOptions {
  json?: boolean;
  /** Default: process.stdout and process.stderr. */
  out?: NodeJS.WritableStream;
  err?: NodeJS.WritableStream;
}

/**
 * `s2uc status`: asks every gateway in parallel, prints them in the order given
 * (failures as one line each on stderr, or as `{s2cs, error}` in the JSON), and
 * returns the exit code: 1 if any gateway failed, 0 otherwise.
 */
export async function statusCommand(servers: string[], uid: string | undefined, opts: ConnectionOptions, flags: StatusCommandOptions = {}): Promise<number> {
  const out = flags.out ?? process.stdout;
  const err = flags.err ?? process.stderr;
  const report = await gatewaysStatus(servers, uid, opts);
  const code = report.gateways.some(isFailure) ? 1 : 0;
  for (const g of report.gateways) {
    if (isFailure(g)) err.write(`s2uc: error: ${g.error}\n`);
    else if (!flags.json) out.write(formatGatewayStatus(g, undefined, uid !== undefined ? 10 : 3));
  }
  if (flags.json) out.write(`${JSON.stringify(report)}\n`);
  return code;
}
