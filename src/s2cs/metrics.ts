// The gateway's Prometheus metrics (docs/metrics.md: the families are part of the
// contract). Everything but the rpc figures is read at scrape time from what
// `status` reads (the stream table, the data server, the agent pool): no timers of
// its own, nothing on the forwarding path.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Refusals, RefusalKind } from '../limits/refusals.js';
import type { AgentSummary, DataServer } from '../s2ds/index.js';
import type { StreamState, StreamTable } from './streams/index.js';
import { WAN_BREAK_CAUSES } from '../s2ds/liveness.js';
import { DROP_CAUSES } from '../s2ds/udp/counters.js';

export interface MetricsSources {
  table: StreamTable;
  dataServer: DataServer;
  agents: () => AgentSummary[];
  refusals: Refusals;
}

const STATES: readonly (StreamState | 'broken')[] = ['reserving', 'awaiting-hello', 'awaiting-update', 'ready', 'broken'];
/**
 * Which family counts each refusal kind: data connections refused at the listeners
 * (wan), or rpcs refused before a stream is taken on (admission: a req over a user's
 * ports or over --capacity, a Hello over the waiting-Hello caps). A Record, so that a
 * new kind does not compile until it is placed.
 */
const REFUSAL_FAMILY: Record<RefusalKind, 'wan' | 'admission' | 'control'> = {
  'conns-per-listener': 'wan',
  'waiting-conns': 'wan',
  'buffer-memory': 'wan',
  'wan-auth': 'wan',
  'handshake-timeout': 'wan',
  'pending-conns-per-peer': 'wan',
  'pending-conns': 'wan',
  'target-unreachable': 'wan',
  'allow-list': 'wan',
  'ports-per-user': 'admission',
  'pending-hellos': 'admission',
  capacity: 'admission',
  'control-conns-per-source': 'control',
  'control-handshakes-per-source': 'control',
  'control-conns': 'control',
};
const kindsOf = (family: 'wan' | 'admission' | 'control') => (Object.keys(REFUSAL_FAMILY) as RefusalKind[]).filter((k) => REFUSAL_FAMILY[k] === family);

export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly rpcRequests: Counter<'rpc' | 'code'>;
  private readonly rpcDuration: Histogram<'rpc'>;
  private defaults = false;

  constructor(src: MetricsSources) {
    const registers = [this.registry];
    const { table, dataServer, refusals } = src;
    new Gauge({
      name: 'scistream_streams',
      help: 'Streams held by the gateway, by state (reserving, awaiting-hello, awaiting-update, ready, broken)',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = new Map<string, number>(STATES.map((s) => [s, 0]));
        for (const s of table.status()) counts.set(s.state, (counts.get(s.state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'scistream_connections',
      help: "Data connections of the gateway's streams: active (forwarding), waiting (accepted before the connection map) or pending (not yet authenticated or matched to their target)",
      labelNames: ['state'],
      registers,
      collect() {
        let active = 0;
        let waiting = 0;
        for (const s of table.status()) {
          active += s.stats?.activeConnections ?? 0;
          waiting += s.stats?.waitingConnections ?? 0;
        }
        this.set({ state: 'active' }, active);
        this.set({ state: 'waiting' }, waiting);
        this.set({ state: 'pending' }, dataServer.pendingConnections?.() ?? 0);
      },
    });
    new Counter({
      name: 'scistream_streams_let_go_total',
      help: 'Streams the gateway released by itself after setup since it started, by reason: broken (connections ended abnormally), idle (--idle-stream-timeout), lifetime (its own or --max-stream-lifetime)',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(table.streamsLetGo)) this.inc({ reason }, n);
      },
    });
    new Counter({
      name: 'scistream_bytes_total',
      help: 'Bytes forwarded by the gateway since it started, to_target (towards the stream target) or from_target',
      labelNames: ['direction'],
      registers,
      collect() {
        let to = table.releasedBytes.toTarget;
        let from = table.releasedBytes.fromTarget;
        for (const s of table.status()) {
          to += s.stats?.bytesToTarget ?? 0;
          from += s.stats?.bytesFromTarget ?? 0;
        }
        this.reset();
        this.inc({ direction: 'to_target' }, to);
        this.inc({ direction: 'from_target' }, from);
      },
    });
    new Counter({
      name: 'scistream_stream_bytes_total',
      help: 'Bytes forwarded for one stream, by uid and direction; the series ends when the stream is released',
      labelNames: ['uid', 'direction'],
      registers,
      collect() {
        // reset(): the series of released streams go (bounded by the live streams, hence the port range).
        this.reset();
        for (const s of table.status()) {
          this.inc({ uid: s.uid, direction: 'to_target' }, s.stats?.bytesToTarget ?? 0);
          this.inc({ uid: s.uid, direction: 'from_target' }, s.stats?.bytesFromTarget ?? 0);
        }
      },
    });
    // UDP streams (issue 21): per stream, so that a drop names the stream it hurt; bounded by the live streams.
    new Counter({
      name: 'scistream_stream_datagrams_total',
      help: 'Datagrams forwarded for one UDP stream, by uid and direction; the series ends when the stream is released',
      labelNames: ['uid', 'direction'],
      registers,
      collect() {
        this.reset();
        for (const s of table.status()) {
          const d = s.stats?.datagrams;
          if (!d) continue;
          this.inc({ uid: s.uid, direction: 'to_target' }, d.datagramsToTarget);
          this.inc({ uid: s.uid, direction: 'from_target' }, d.datagramsFromTarget);
        }
      },
    });
    new Counter({
      name: 'scistream_stream_datagrams_dropped_total',
      help: `Datagrams of one UDP stream dropped, by uid and cause (${DROP_CAUSES.join(', ')}: docs/metrics.md)`,
      labelNames: ['uid', 'cause'],
      registers,
      collect() {
        this.reset();
        for (const s of table.status()) for (const d of s.stats?.datagrams?.drops ?? []) this.inc({ uid: s.uid, cause: d.cause }, d.count);
      },
    });
    new Counter({
      name: 'scistream_datagrams_dropped_total',
      help: `Datagrams of UDP streams dropped since the data servers started, released streams included, by cause (${DROP_CAUSES.join(', ')}); over all data-server agents`,
      labelNames: ['cause'],
      registers,
      collect() {
        // Every cause from the first scrape (as 0); only known causes and whole counts from the agents.
        const totals = new Map<string, number>(DROP_CAUSES.map((c) => [c, 0]));
        for (const d of dataServer.datagramTotals?.().drops ?? []) {
          if (totals.has(d.cause) && Number.isSafeInteger(d.count) && d.count > 0) totals.set(d.cause, totals.get(d.cause)! + d.count);
        }
        this.reset();
        for (const [cause, n] of totals) this.inc({ cause }, n);
      },
    });
    new Gauge({
      name: 'scistream_udp_flows',
      help: 'UDP flows (senders) open now over every UDP stream',
      registers,
      collect() {
        let n = 0;
        for (const s of table.status()) n += s.stats?.datagrams?.flows ?? 0;
        this.set(n);
      },
    });
    new Gauge({
      name: 'scistream_ports',
      help: 'Ports of --port-range: reserved by streams, or free',
      labelNames: ['state'],
      registers,
      collect() {
        const p = dataServer.ports();
        this.set({ state: 'reserved' }, p.reserved);
        this.set({ state: 'free' }, p.free);
      },
    });
    const refusalCounter = (name: string, help: string, kinds: readonly RefusalKind[]) =>
      new Counter({
        name,
        help,
        labelNames: ['reason'],
        registers,
        collect() {
          // Every kind from the first scrape (as 0): alerts need no absent().
          const totals = new Map<string, number>(kinds.map((k) => [k, 0]));
          for (const t of refusals.totals()) if (totals.has(t.kind)) totals.set(t.kind, t.count);
          this.reset();
          for (const [reason, n] of totals) this.inc({ reason }, n);
        },
      });
    const wan = kindsOf('wan');
    const admission = kindsOf('admission');
    refusalCounter('scistream_wan_refused_total', `Data connections the gateway refused, by reason (the refusal kinds of the README: ${wan.join(', ')})`, wan);
    refusalCounter(
      'scistream_admission_refused_total',
      `Control rpcs refused before a stream was taken on, by reason (${admission.join(', ')}); each also counts in scistream_rpc_requests_total under its code`,
      admission,
    );
    const control = kindsOf('control');
    refusalCounter('scistream_control_refused_total', `Connections to the control port reset when accepted, by reason (${control.join(', ')}: --max-control-conns-per-source, --max-control-handshakes-per-source, --max-control-conns)`, control);
    new Counter({
      name: 'scistream_wan_broken_total',
      help: `Framed (TLS) WAN connections that broke mid-stream, both applications reset, by cause (${WAN_BREAK_CAUSES.join(', ')}); over all data-server agents`,
      labelNames: ['cause'],
      registers,
      collect() {
        // Every cause from the first scrape (as 0); only known causes and whole counts from the agents.
        const totals = new Map<string, number>(WAN_BREAK_CAUSES.map((c) => [c, 0]));
        for (const t of dataServer.wanBreakTotals?.() ?? []) {
          if (totals.has(t.cause) && Number.isSafeInteger(t.count) && t.count > 0) totals.set(t.cause, totals.get(t.cause)! + t.count);
        }
        this.reset();
        for (const [cause, n] of totals) this.inc({ cause }, n);
      },
    });
    new Gauge({
      name: 'scistream_stream_rate_stated_bytes_per_second',
      help: 'The rate a live stream stated in its req (Request.rate, kB/s, times 1000), by uid; no series for a stream that states none',
      labelNames: ['uid'],
      registers,
      collect() {
        this.reset();
        for (const s of table.status()) if (s.rate > 0) this.set({ uid: s.uid }, s.rate * 1000);
      },
    });
    new Gauge({
      name: 'scistream_stream_rate_cap_bytes_per_second',
      help: 'Bytes per second the gateway holds a live stream to, each way (--rate-policy cap or reserve), by uid; no series for a stream not capped',
      labelNames: ['uid'],
      registers,
      collect() {
        this.reset();
        for (const s of table.status()) if (s.capBps > 0) this.set({ uid: s.uid }, s.capBps);
      },
    });
    // Only under reserve: elsewhere there is no capacity, and a 0 would read as "full".
    // (The rate policy is fixed while s2cs runs: a reload does not change it.)
    if (table.rateLimits().policy === 'reserve') {
      new Gauge({
        name: 'scistream_rate_capacity_bytes_per_second',
        help: 'What the gateway admits streams against (--capacity), bytes per second; only with --rate-policy reserve',
        registers,
        collect() {
          this.set(table.rateLimits().capacityBps);
        },
      });
      new Gauge({
        name: 'scistream_rate_reserved_bytes_per_second',
        help: "The sum of the live streams' stated rates, bytes per second, out of the capacity; only with --rate-policy reserve",
        registers,
        collect() {
          this.set(table.reservedBps());
        },
      });
    }
    new Gauge({
      name: 'scistream_agents',
      help: 'Data-server agents (s2ds workers and --s2ds agents): up (answering) or down',
      labelNames: ['state'],
      registers,
      collect() {
        const agents = src.agents();
        const up = agents.filter((a) => a.up).length;
        this.set({ state: 'up' }, up);
        this.set({ state: 'down' }, agents.length - up);
      },
    });
    this.rpcRequests = new Counter({
      name: 'scistream_rpc_requests_total',
      help: 'Control rpcs answered, by rpc (req, hello, update, release, status, capabilities) and gRPC status (OK, NOT_FOUND, ...)',
      labelNames: ['rpc', 'code'],
      registers,
    });
    this.rpcDuration = new Histogram({
      name: 'scistream_rpc_duration_seconds',
      help: 'Time from a control rpc arriving to its answer, by rpc (a producer req waits for its Hello)',
      labelNames: ['rpc'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 180],
      registers,
    });
  }

  /** An answered rpc (guardedUnary's observe). */
  readonly observeRpc = (rpc: string, code: string, seconds: number): void => {
    this.rpcRequests.inc({ rpc, code });
    this.rpcDuration.observe({ rpc }, seconds);
  };

  /** Adds prom-client's process metrics (CPU, memory, event loop, GC); once they are served. */
  withProcessMetrics(): this {
    if (!this.defaults) collectDefaultMetrics({ register: this.registry });
    this.defaults = true;
    return this;
  }
}
