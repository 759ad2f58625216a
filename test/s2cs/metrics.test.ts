// The gateway's metrics: scraped by a real Prometheus server (Debian's prometheus,
// started here on loopback) and read back through its HTTP API; the families of
// docs/metrics.md in the text format; /healthz; the --metrics-listen flag checks.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, freePortRange, spawnCli } from '../../src/demo/procs.js';
import { startControlServer } from '../../src/s2cs/server.js';
import { startMonitor } from '../../src/s2cs/monitor.js';
import { RemoteAgent } from '../../src/s2ds/remote.js';
import { createLogger } from '../../src/log.js';
import { http, sinkStream, startMonitoredGateway, type MonitoredGateway } from '../support/monitored.js';
import { until } from '../support/until.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PROMETHEUS = '/usr/bin/prometheus';


/** The value of one series in Prometheus text format, undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metrics', () => {
  let m: MonitoredGateway;
  before(async () => {
    m = await startMonitoredGateway();
  });
  after(() => m.close());

  test('a real Prometheus scrapes /metrics and shows the bytes of a stream by its uid', async (t) => {
    assert.ok(existsSync(PROMETHEUS), `${PROMETHEUS} is missing: install Debian's prometheus package (npm test does, as root: scripts/test-packages.sh)`);
    const stream = await sinkStream(m.gw);
    t.after(async () => {
      await m.gw.client.release({ uid: stream.uid });
      await stream.close();
    });
    const bytes = 3 * 1024 * 1024 + 17;
    await stream.send(bytes);

    const dir = await mkdtemp(join(tmpdir(), 'scistream-prometheus-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const config = join(dir, 'prometheus.yml');
    await writeFile(
      config,
      [
        'global:',
        '  scrape_interval: 1s',
        '  scrape_timeout: 1s',
        'scrape_configs:',
        '  - job_name: s2cs',
        '    static_configs:',
        `      - targets: ['127.0.0.1:${m.monitor.port}']`,
        '',
      ].join('\n'),
    );
    const webPort = await freePort();
    const prom = spawn(
      PROMETHEUS,
      [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${webPort}`, '--log.level=warn'],
      { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
    );
    let promLog = '';
    prom.stderr.on('data', (c: Buffer) => (promLog = (promLog + c.toString()).slice(-4000)));
    const exited = new Promise<number | null>((resolve) => prom.once('exit', (code) => resolve(code)));
    t.after(async () => {
      try {
        process.kill(-prom.pid!, 'SIGTERM');
      } catch {
        // already gone
      }
      const killer = setTimeout(() => process.kill(-prom.pid!, 'SIGKILL'), 10_000);
      await exited;
      clearTimeout(killer);
    });

    const query = `scistream_stream_bytes_total{uid="${stream.uid}",direction="to_target"}`;
    const seen = await until(`${query} in Prometheus (its log: ${promLog})`, 45_000, async () => {
      const res = await fetch(`http://127.0.0.1:${webPort}/api/v1/query?query=${encodeURIComponent(query)}`, { signal: AbortSignal.timeout(2000) });
      const body = (await res.json()) as { status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
      assert.equal(body.status, 'success');
      const v = body.data.result[0];
      return v && Number(v.value[1]) === bytes ? v : undefined;
    });
    assert.equal(seen.metric.job, 's2cs');
    assert.equal(seen.metric.uid, stream.uid);
    // The scrape itself is healthy in Prometheus's eyes.
    const up = (await (await fetch(`http://127.0.0.1:${webPort}/api/v1/query?query=up`)).json()) as { data: { result: { value: [number, string] }[] } };
    assert.equal(up.data.result[0]?.value[1], '1');
  });

  test('the families of docs/metrics.md, with default process metrics; rpcs counted by status code; a released stream leaves its series but not the totals', async () => {
    const stream = await sinkStream(m.gw);
    try {
      await stream.send(100_000);
      // A refused rpc: a uid that is not valid.
      await assert.rejects(m.gw.client.req({ uid: 'not valid!', role: 'CONS', num_conn: 1, rate: 0 }), /INVALID_ARGUMENT/);
      const res = await http(`${m.url}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const text = res.body;
      for (const family of ['scistream_streams', 'scistream_connections', 'scistream_bytes_total', 'scistream_stream_bytes_total', 'scistream_ports', 'scistream_rpc_requests_total', 'scistream_rpc_duration_seconds', 'scistream_wan_refused_total', 'scistream_wan_broken_total', 'scistream_admission_refused_total', 'scistream_stream_rate_stated_bytes_per_second', 'scistream_stream_rate_cap_bytes_per_second', 'scistream_agents']) {
        assert.match(text, new RegExp(`^# TYPE ${family} `, 'm'), `${family} is served`);
      }
      assert.match(text, /^process_cpu_seconds_total /m, 'default process metrics');
      assert.match(text, /^nodejs_eventloop_lag_seconds /m);
      assert.equal(sample(text, 'scistream_streams{state="ready"}'), 1);
      assert.equal(sample(text, 'scistream_connections{state="active"}'), 1);
      assert.equal(sample(text, `scistream_stream_bytes_total{uid="${stream.uid}",direction="to_target"}`), 100_000);
      assert.ok(sample(text, 'scistream_ports{state="reserved"}')! >= 1);
      assert.equal(sample(text, 'scistream_agents{state="up"}'), 1);
      assert.equal(sample(text, 'scistream_wan_refused_total{reason="wan-auth"}'), 0);
      assert.equal(sample(text, 'scistream_wan_broken_total{cause="dead-peer"}'), 0, 'every cause from the first scrape');
      assert.equal(sample(text, 'scistream_admission_refused_total{reason="capacity"}'), 0);
      assert.equal(sample(text, 'scistream_wan_refused_total{reason="capacity"}'), undefined, 'admission refusals are not connection refusals');
      // --rate-policy none, a stream stating no rate: no rate series, no capacity families.
      assert.ok(!text.includes(`scistream_stream_rate_stated_bytes_per_second{uid="${stream.uid}"}`));
      assert.ok(!text.includes(`scistream_stream_rate_cap_bytes_per_second{uid="${stream.uid}"}`));
      assert.doesNotMatch(text, /scistream_rate_(capacity|reserved)_bytes_per_second/);
      assert.ok(sample(text, 'scistream_rpc_requests_total{rpc="req",code="OK"}')! >= 1);
      assert.ok(sample(text, 'scistream_rpc_requests_total{rpc="update",code="OK"}')! >= 1);
      assert.equal(sample(text, 'scistream_rpc_requests_total{rpc="req",code="INVALID_ARGUMENT"}'), 1);
      assert.ok(sample(text, 'scistream_rpc_duration_seconds_count{rpc="req"}')! >= 2);
      const before = sample(text, 'scistream_bytes_total{direction="to_target"}')!;
      assert.ok(before >= 100_000, `bytes_total ${before}`);

      await m.gw.client.release({ uid: stream.uid });
      const after = (await http(`${m.url}/metrics`)).body;
      assert.equal(sample(after, `scistream_stream_bytes_total{uid="${stream.uid}",direction="to_target"}`), undefined, 'the series of a released stream is dropped');
      assert.ok(!after.includes(stream.uid));
      assert.equal(sample(after, 'scistream_bytes_total{direction="to_target"}'), before, 'the gateway total keeps what released streams carried');
      assert.equal(sample(after, 'scistream_streams{state="ready"}'), 0);
      assert.equal(sample(after, 'scistream_rpc_requests_total{rpc="release",code="OK"}'), (sample(text, 'scistream_rpc_requests_total{rpc="release",code="OK"}') ?? 0) + 1);
    } finally {
      await stream.close();
    }
  });
});

describe('rate metrics under --rate-policy reserve', () => {
  let m: MonitoredGateway;
  before(async () => {
    // 1 Gbit/s of capacity.
    m = await startMonitoredGateway({ ratePolicy: 'reserve', capacityBps: 125_000_000 });
  });
  after(() => m.close());

  test("a capped stream's stated rate and cap by uid, the capacity and what is reserved of it, capacity refusals; released streams' series dropped", async () => {
    // 200 Mbit/s (25,000 kB/s), and an uncapped-by-policy neighbour is impossible under reserve: every stream states a rate.
    const stream = await sinkStream(m.gw, { rate: 25_000 });
    let released = false;
    try {
      await stream.send(100_000);
      // Refused at admission: no rate stated, and more than is free (1.6 Gbit/s).
      await assert.rejects(m.gw.client.req({ uid: 'no-rate', role: 'CONS', num_conn: 1, rate: 0 }), /INVALID_ARGUMENT.*states no rate/);
      await assert.rejects(m.gw.client.req({ uid: 'too-fast', role: 'CONS', num_conn: 1, rate: 200_000 }), /RESOURCE_EXHAUSTED.*800 Mbit\/s/);
      const text = (await http(`${m.url}/metrics`)).body;
      assert.match(text, /^# TYPE scistream_stream_rate_stated_bytes_per_second gauge$/m);
      assert.match(text, /^# TYPE scistream_rate_capacity_bytes_per_second gauge$/m);
      assert.equal(sample(text, `scistream_stream_rate_stated_bytes_per_second{uid="${stream.uid}"}`), 25_000_000);
      assert.equal(sample(text, `scistream_stream_rate_cap_bytes_per_second{uid="${stream.uid}"}`), 25_000_000);
      assert.equal(sample(text, 'scistream_rate_capacity_bytes_per_second'), 125_000_000);
      assert.equal(sample(text, 'scistream_rate_reserved_bytes_per_second'), 25_000_000);
      assert.equal(sample(text, 'scistream_admission_refused_total{reason="capacity"}'), 2);
      assert.equal(sample(text, 'scistream_admission_refused_total{reason="ports-per-user"}'), 0);
      assert.equal(sample(text, 'scistream_admission_refused_total{reason="pending-hellos"}'), 0);
      assert.equal(sample(text, 'scistream_rpc_requests_total{rpc="req",code="RESOURCE_EXHAUSTED"}'), 1);
      assert.equal(sample(text, 'scistream_rpc_requests_total{rpc="req",code="INVALID_ARGUMENT"}'), 1);
      // The refused reqs hold nothing: no series under their uids.
      assert.ok(!text.includes('no-rate') && !text.includes('too-fast'));

      await m.gw.client.release({ uid: stream.uid });
      released = true;
      const after = (await http(`${m.url}/metrics`)).body;
      assert.ok(!after.includes(stream.uid), 'the series of a released stream are dropped');
      assert.equal(sample(after, 'scistream_rate_reserved_bytes_per_second'), 0);
      assert.equal(sample(after, 'scistream_rate_capacity_bytes_per_second'), 125_000_000);
      assert.equal(sample(after, 'scistream_admission_refused_total{reason="capacity"}'), 2);
    } finally {
      if (!released) await m.gw.client.release({ uid: stream.uid }).catch(() => undefined);
      await stream.close();
    }
  });
});

describe('/healthz', () => {
  test('200 while serving; 503 with the reason when no agent answers, and when the gateway shuts down', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'scistream-healthz-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const logger = createLogger({ silent: true });
    const server = await startControlServer({
      port: 0,
      host: '127.0.0.1',
      listenerIp: '127.0.0.1',
      portRange: await freePortRange(4),
      // A worker that dies stays down for the test's length.
      workers: { count: 1, dir: join(dir, 'agents'), backoffMs: 600_000 },
      connectAgent: (address, name) => new RemoteAgent({ address, name, pollIntervalMs: 200, logger }),
      logger,
    });
    const monitor = await startMonitor({ host: '127.0.0.1', port: 0, gateway: server, title: 's2cs', logger });
    const url = `http://127.0.0.1:${monitor.port}/healthz`;
    try {
      let res = await http(url);
      assert.equal(res.status, 200);
      assert.equal(res.body, 'ok\n');
      const [pid] = server.supervisor!.pids();
      process.kill(pid!, 'SIGKILL');
      res = await until('503 from /healthz', 15_000, async () => {
        const r = await http(url);
        return r.status === 503 ? r : undefined;
      });
      assert.match(res.body, /^unavailable: no data-server agent answers \(worker-0 at unix:/);
      assert.match((await http(`http://127.0.0.1:${monitor.port}/metrics`)).body, /^scistream_agents\{state="down"\} 1$/m);
    } finally {
      const closing = server.close();
      const during = await http(url).catch(() => undefined);
      if (during) assert.equal(during.status, 503, 'not healthy once shutting down');
      await closing;
      await monitor.close();
    }
    // Nothing left behind by the worker.
    assert.equal(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(dir)).length, 0);
  });
});

describe('s2cs start --metrics-listen', () => {
  let busy: Server;
  let busyPort: number;
  before(async () => {
    busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    busyPort = (busy.address() as { port: number }).port;
  });
  after(() => new Promise<void>((resolve) => busy.close(() => resolve())));

  const base = ['start', '--insecure', '--port', '0', '--listener-ip', '127.0.0.1'];
  async function usage(args: string[], expected: RegExp): Promise<void> {
    const p = spawnCli('s2cs', [...base, ...args]);
    // A start that wrongly succeeds is stopped, not left running.
    const code = await Promise.race([p.exited, sleep(20_000).then(() => p.stop())]);
    const err = p.stderr().trim();
    assert.equal(code, 2, err);
    assert.equal(err.split('\n').length, 1, err);
    assert.match(err, expected);
  }

  test('a port in use, a bad address, or a non-loopback address with token checking: one line, exit code 2', async () => {
    await usage(['--metrics-listen', `127.0.0.1:${busyPort}`], new RegExp(`--metrics-listen 127\\.0\\.0\\.1:${busyPort} is in use by another program`));
    await usage(['--metrics-listen', '::1:9464'], /--metrics-listen ::1:9464: an IPv6 address belongs in brackets, e\.g\. \[::1\]:9464/);
    await usage(['--metrics-listen', '0.0.0.0:0', '--auth', 'jwt', '--issuer', 'https://idp.invalid', '--audience', 'gw', '--scope', 's'], /--metrics-listen 0\.0\.0\.0 is not a loopback address.*--metrics-public/);
    await usage(['--metrics-public'], /--metrics-public applies to --metrics-listen/);
  });

  test('serves on an IPv6 loopback address and stops with s2cs', async () => {
    const p = spawnCli('s2cs', [...base, '--metrics-listen', '[::1]:0']);
    try {
      await p.waitFor(/s2cs ready/);
      const m = /metrics at http:\/\/(\[::1\]:\d+)\/metrics/.exec(p.stderr());
      assert.ok(m, p.stderr());
      const res = await http(`http://${m[1]}/healthz`);
      assert.equal(res.status, 200);
    } finally {
      assert.equal(await p.stop(), 0);
    }
  });
});
