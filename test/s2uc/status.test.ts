// s2uc status as a library and as text: units, ages, rates, the camelCase JSON
// shape with numbers, and several gateways with one of them down.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { freePort } from '../../src/demo/procs.js';
import {
  formatAge,
  formatBps,
  formatGatewayStatus,
  gatewaysStatus,
  isFailure,
  statusCommand,
  streamStatus,
  toGatewayStatus,
  type GatewayStatus,
  type StreamStatusRow,
} from '../../src/s2uc/status.js';
import * as library from '../../src/index.js';

const KiB = 1024;
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

function stream(over: Partial<StreamStatusRow> = {}): StreamStatusRow {
  return {
    uid: 'u-1',
    role: 'PROD',
    numConn: 2,
    rate: 0,
    capBps: 0,
    state: 'ready',
    protocol: 'tcp',
    releasingOn: [],
    brokenReason: '',
    expiresInS: 0,
    owner: 'alice',
    ageS: 192,
    leaseRemainingS: 0,
    listeners: ['10.0.0.1:5100', '10.0.0.1:5101'],
    prodListeners: ['192.168.1.5:7000'],
    targets: ['192.168.1.5:7000'],
    bytesToTarget: 3 * GiB / 2,
    bytesFromTarget: 512,
    toTargetBps: 101_562_500,
    fromTargetBps: 0,
    activeConnections: 2,
    waitingConnections: 0,
    acceptedConnections: 5,
    refusedConnections: 1,
    redacted: false,
    standing: false,
    allowFrom: [],
    recentConnections: [],
    ...over,
  };
}

describe('units', () => {
  test('ages', () => {
    assert.equal(formatAge(0), '0s');
    assert.equal(formatAge(59), '59s');
    assert.equal(formatAge(60), '1m00s');
    assert.equal(formatAge(192), '3m12s');
    assert.equal(formatAge(3600 + 5 * 60 + 59), '1h05m');
    assert.equal(formatAge(3 * 86400 + 4 * 3600), '3d04h');
  });
  test('rates in bits per second', () => {
    assert.equal(formatBps(0), '0.00 Mbit/s');
    assert.equal(formatBps(101_562_500), '812.50 Mbit/s');
    assert.equal(formatBps(1_176_250_000), '9.41 Gbit/s');
  });
});

describe('human output', () => {
  test('a ready stream: aligned fields, sizes with units, rate, age, listeners -> targets, no lease', () => {
    const text = formatGatewayStatus({ s2cs: '127.0.0.1:5000', reservedPorts: 2, freePorts: 98, ratePolicy: 'none', capacityBps: 0, reservedBps: 0, streams: [stream()], refusals: { 'wan-auth': 0 }, agents: [], ended: [] });
    const lines = text.trimEnd().split('\n');
    assert.equal(lines[0], 'gateway 127.0.0.1:5000: 1 stream, 2 ports reserved, 98 free');
    assert.equal(lines[1], '  stream u-1 (PROD, 2 connections)');
    assert.match(text, /^ {4}state {8}ready$/m);
    assert.doesNotMatch(text, /lease/);
    assert.match(text, /^ {4}age {10}3m12s$/m);
    assert.match(text, /^ {4}owner {8}alice$/m);
    assert.match(text, /^ {4}listeners {4}10\.0\.0\.1:5100 -> 192\.168\.1\.5:7000$/m);
    assert.match(text, /^ {17}10\.0\.0\.1:5101 -> 192\.168\.1\.5:7000$/m);
    assert.match(text, /^ {4}to target +1\.50 GiB +812\.50 Mbit\/s/m);
    assert.match(text, /^ {4}from target +512 B +0\.00 Mbit\/s/m);
    assert.match(text, /2 active, 0 waiting, 5 accepted, 1 refused/);
    assert.doesNotMatch(text, /refused since start/, 'kinds with no refusal are not listed');
    // Values start in one column.
    const columns = lines.slice(2).filter((l) => /^ {4}\S/.test(l)).map((l) => l.search(/(?<=^ {4}\S.*? {2,})\S/));
    assert.equal(new Set(columns).size, 1, `values aligned: ${columns.join(',')}`);
  });

  test('a stream still being set up: its lease, and no targets yet', () => {
    const text = formatGatewayStatus({
      s2cs: '127.0.0.1:5000',
      reservedPorts: 1,
      freePorts: 9,
      ratePolicy: 'none',
      capacityBps: 0,
      reservedBps: 0,
      streams: [stream({ state: 'awaiting-update', leaseRemainingS: 75, targets: [], listeners: ['10.0.0.1:5100'], numConn: 1, rate: 100, bytesToTarget: 3 * KiB, bytesFromTarget: 5 * MiB })],
      refusals: { 'ports-per-user': 3 },
      agents: [
        { name: 'worker-0', address: 'unix:/var/lib/s2cs/agents-5000/worker-0.sock', listenerIp: '10.0.0.1', up: true, streams: 1, freePorts: 9, bytesPerSecond: 125_000_000 },
        { name: 'gwa2', address: '10.0.1.3:7200', listenerIp: '10.0.0.2', up: false, streams: 0, freePorts: 0, bytesPerSecond: 0 },
      ],
      ended: [{ uid: 'u-0', owner: 'alice', why: 'its data-server agent worker-1 died (killed by SIGKILL)', agoS: 125 }],
    });
    assert.match(text, /ended by the gateway 2m05s ago: u-0 \(owner alice\): its data-server agent worker-1 died \(killed by SIGKILL\)/);
    assert.match(text, /agent worker-0 \(unix:\/var\/lib\/s2cs\/agents-5000\/worker-0\.sock, listeners on 10\.0\.0\.1\): up, 1 stream, 9 free ports, 1\.00 Gbit\/s/);
    assert.match(text, /agent gwa2 \(10\.0\.1\.3:7200, listeners on 10\.0\.0\.2\): DOWN, not answering; new streams avoid it/);
    assert.match(text, /stream u-1 \(PROD, 1 connection\)/);
    assert.match(text, /^ {4}rate {9}800 kbit\/s stated \(100 kB\/s\), not enforced by this gateway$/m);
    assert.match(text, /state {8}awaiting-update, lease 1m15s left/);
    assert.match(text, /10\.0\.0\.1:5100 -> \(no targets yet\)/);
    assert.match(text, /3\.00 KiB/);
    assert.match(text, /5\.00 MiB/);
    assert.match(text, /refused since start: ports-per-user=3/);
  });

  test('a stream being released shows which agent has not confirmed it', () => {
    const text = formatGatewayStatus({
      s2cs: 'gw:5000', reservedPorts: 2, freePorts: 0, ratePolicy: 'none', capacityBps: 0, reservedBps: 0, refusals: {}, ended: [], agents: [],
      streams: [stream({ state: 'releasing', releasingOn: ['gwa2: 2 connection(s) may still forward; not confirmed for 12 s'] })],
    });
    assert.match(text, /state {8}releasing\n/);
    assert.match(text, /not released gwa2: 2 connection\(s\) may still forward; not confirmed for 12 s/);
  });
});

describe('allow-lists and standing tunnels', () => {
  test("a stream's allow-list and a standing tunnel are shown; neither line without them", () => {
    const gw = (streams: StreamStatusRow[]) => formatGatewayStatus({ s2cs: '127.0.0.1:5000', reservedPorts: 2, freePorts: 98, ratePolicy: 'none', capacityBps: 0, reservedBps: 0, streams, refusals: {}, agents: [], ended: [] });
    const text = gw([stream({ allowFrom: ['10.0.0.0/24', '2001:db8::/32'], standing: true })]);
    assert.match(text, /allow from +10\.0\.0\.0\/24, 2001:db8::\/32\n/);
    assert.match(text, /stream u-1 \(PROD, 2 connections, standing tunnel of the gateway's configuration file\)/);
    const plain = gw([stream()]);
    assert.doesNotMatch(plain, /allow from|standing/);
  });
});

describe('recent connections', () => {
  const conn = (end: string, endedAtMs: number) => ({ listener: '10.0.0.1:5100', leg: 'lan', peer: '192.168.1.9:40000', bytesIn: 2048, bytesOut: 3 * MiB, durationMs: 1500, end, endedAtMs });
  test('newest first under "last ended": 3 in a list of streams, up to 10 for one stream', () => {
    const recent = Array.from({ length: 5 }, (_, i) => conn(i === 4 ? 'reset-by-target' : 'clean', Date.UTC(2026, 0, 1, 6, 0, i)));
    const g = { s2cs: 'h:1', reservedPorts: 2, freePorts: 3, ratePolicy: 'none', capacityBps: 0, reservedBps: 0, streams: [stream({ recentConnections: recent })], refusals: {}, agents: [], ended: [] };
    const list = formatGatewayStatus(g);
    assert.match(list, /last ended {3}06:00:04 lan 192\.168\.1\.9:40000 -> 10\.0\.0\.1:5100, in 2\.00 KiB, out 3\.00 MiB, 1\.5 s: reset-by-target\n {17}06:00:03 /);
    assert.equal(list.match(/ lan 192\.168\.1\.9:40000 /g)?.length, 3);
    assert.equal(formatGatewayStatus(g, undefined, 10).match(/ lan 192\.168\.1\.9:40000 /g)?.length, 5);
  });
});

describe('against gateways', () => {
  let a: TestGateway;
  let b: TestGateway;
  let downAddress: string;
  before(async () => {
    [a, b] = await Promise.all([startGateway(), startGateway()]);
    downAddress = `127.0.0.1:${await freePort()}`;
  });
  after(async () => {
    await Promise.all([a.close(), b.close()]);
  });

  test('the library returns camelCase keys and numbers (uint64 strings converted), as --json prints', async () => {
    const uid = randomUUID();
    await a.client.req({ uid, role: 'CONS', num_conn: 2, rate: 7 });
    try {
      const g = await streamStatus(a.address, undefined, { insecure: true });
      assertCamelCase(g);
      assert.equal(g.s2cs, a.address);
      assert.equal(g.reservedPorts, 2);
      assert.equal(typeof g.freePorts, 'number');
      const s = g.streams.find((x) => x.uid === uid)!;
      assert.equal(s.numConn, 2);
      assert.equal(s.rate, 7);
      assert.equal(s.state, 'awaiting-update');
      for (const k of ['bytesToTarget', 'bytesFromTarget', 'toTargetBps', 'fromTargetBps', 'ageS', 'leaseRemainingS', 'activeConnections'] as const) {
        assert.equal(typeof s[k], 'number', k);
      }
      assert.ok(s.leaseRemainingS > 0);
      assert.deepEqual(Object.keys(s).sort(), Object.keys(stream()).sort(), 'every field of the row');
      assert.equal(typeof library.streamStatus, 'function', 'exported from the package');
      assert.equal(typeof library.gatewaysStatus, 'function');
    } finally {
      await a.client.release({ uid });
    }
  });

  test('toGatewayStatus converts uint64 strings and refusals', () => {
    const g = toGatewayStatus('h:1', {
      streams: [],
      reserved_ports: 3,
      free_ports: 4,
      rate_policy: '',
      capacity_bps: '0',
      reserved_bps: '0',
      refusals: [{ kind: 'wan-auth', count: '12' }],
      agents: [{ name: 'w', address: 'unix:/s', listener_ip: '10.0.0.1', up: true, streams: 2, free_ports: 7, bytes_per_second: '1000' }],
      ended: [{ uid: 'u', owner: 'o', why: 'w', ago_s: 3 }],
    });
    assert.deepEqual(g, {
      s2cs: 'h:1',
      reservedPorts: 3,
      freePorts: 4,
      ratePolicy: 'none',
      capacityBps: 0,
      reservedBps: 0,
      streams: [],
      refusals: { 'wan-auth': 12 },
      agents: [{ name: 'w', address: 'unix:/s', listenerIp: '10.0.0.1', up: true, streams: 2, freePorts: 7, bytesPerSecond: 1000 }],
      ended: [{ uid: 'u', owner: 'o', why: 'w', agoS: 3 }],
    });
  });

  test('several gateways: asked together, answered in the order given, one down reported in its place', async () => {
    const report = await gatewaysStatus([b.address, downAddress, a.address], undefined, { insecure: true, deadlineMs: 5000 });
    assert.deepEqual(report.gateways.map((g) => g.s2cs), [b.address, downAddress, a.address]);
    const [gb, down, ga] = report.gateways;
    assert.ok(!isFailure(gb!) && !isFailure(ga!));
    assert.ok(isFailure(down!));
    assert.match(down.error, new RegExp(downAddress.replace(/\./g, '\\.')));
    assertCamelCase(report);
  });

  test('statusCommand: one error line on stderr for the gateway that is down, the others shown, exit code 1', async () => {
    const out = collect();
    const err = collect();
    const code = await statusCommand([a.address, downAddress, b.address], undefined, { insecure: true, deadlineMs: 5000 }, { out: out.stream, err: err.stream });
    assert.equal(code, 1);
    assert.match(out.text(), new RegExp(`^gateway ${a.address}:[^]*^gateway ${b.address}:`, 'm'));
    const errLines = err.text().trimEnd().split('\n');
    assert.equal(errLines.length, 1);
    assert.match(errLines[0]!, new RegExp(`^s2uc: error: .*${downAddress}`));

    const json = collect();
    assert.equal(await statusCommand([a.address, b.address], undefined, { insecure: true }, { json: true, out: json.stream, err: collect().stream }), 0);
    const parsed = JSON.parse(json.text()) as { gateways: GatewayStatus[] };
    assert.deepEqual(parsed.gateways.map((g) => g.s2cs), [a.address, b.address]);
  });
});

function collect(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  return {
    stream: new Writable({
      write(chunk: Buffer, _enc, done) {
        chunks.push(chunk);
        done();
      },
    }),
    text: () => Buffer.concat(chunks).toString('utf8'),
  };
}

/** Every key at every depth is camelCase (refusal kinds are values used as keys, so they may have hyphens). */
function assertCamelCase(value: unknown, path = '$'): void {
  if (Array.isArray(value)) {
    value.forEach((v, i) => assertCamelCase(v, `${path}[${i}]`));
    return;
  }
  if (value === null || typeof value !== 'object') return;
  for (const [k, v] of Object.entries(value)) {
    if (path.endsWith('.refusals')) continue;
    assert.match(k, /^[a-z][a-zA-Z0-9]*$/, `${path}.${k} is not camelCase`);
    if (typeof v === 'string' && k !== 'uid' && k !== 'owner') assert.doesNotMatch(v, /^\d+$/, `${path}.${k} is a number sent as a string`);
    assertCamelCase(v, `${path}.${k}`);
  }
}
