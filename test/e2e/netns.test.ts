// SciStream across hosts that really cannot reach each other (issue #3, item 5).
// Each host is a Linux network namespace (see test/support/netns.ts): the producer and the
// consumer sit on separate facility LANs, and only the gateways share a WAN. The real CLIs
// run in their hosts' namespaces; tcpdump on the WAN checks that the stream crosses it
// encrypted, and a WAN host without credentials tries gateway A's data listeners.
// Needs root and iproute2 + tcpdump (CI installs them, .ci/run); without them it fails, saying so.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADDR, labForSuite, type Host, type NsProc } from '../support/netns.js';
import { LAB_CONTROL, requestLabStream, startLabGateways } from '../support/lab-gateways.js';
import { acceptedCount, MARKER_CONSUMER, MARKER_PRODUCER } from '../support/marker-apps.js';

const NUM_CONN = 2;
const BYTES_PER_CONN = 4 * 1024 * 1024;
/** Sent in clear by the producer; it must show on the A LAN and never on the WAN. */
const MARKER = `SCISTREAM-CLEARTEXT-MARKER-${randomBytes(8).toString('hex')}`;
const PRODUCER_ADDR = `${ADDR.prod}:7000`;
const GWA = LAB_CONTROL.gwa;
const GWB = LAB_CONTROL.gwb;
const PORT_RANGE = '5100-5120';
/** How long an unauthenticated connection may stay open before we call it "left open". */
const ATTACK_WAIT_MS = 20_000;
// Generous: namespaces, several Node processes and certificate generation on a busy CI machine.
const STEP = { timeout: 180_000 };

/** A WAN host without credentials: plain TCP, or TLS without a client certificate. Prints one JSON object. */
const ATTACKER_SCRIPT = `
const [mode, address, waitMs] = process.argv.slice(1);
const i = address.lastIndexOf(':');
const opts = { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
const r = { mode, address, bytes: 0, closed: false, events: [] };
const probe = 'GET / HTTP/1.0\\r\\n\\r\\n' + 'x'.repeat(1000);
const s = mode === 'tls'
  ? require('node:tls').connect({ ...opts, rejectUnauthorized: false }, () => { r.events.push('secureConnect'); s.write(probe); })
  : require('node:net').connect(opts, () => { r.events.push('connect'); s.write(probe); });
s.on('data', (d) => { r.bytes += d.length; });
s.on('end', () => r.events.push('end'));
s.on('error', (e) => r.events.push('error ' + (e.code || e.message)));
const done = () => { clearTimeout(timer); console.log(JSON.stringify(r)); process.exit(0); };
s.on('close', () => { r.closed = true; done(); });
const timer = setTimeout(() => { r.events.push('still open after ' + waitMs + ' ms'); done(); }, Number(waitMs));
`;

interface StreamMap {
  uid: string;
  prodListeners: string[];
  consListeners: string[];
  prodAppListeners: string[];
}

const logs = (...procs: (NsProc | undefined)[]) => procs.filter((p): p is NsProc => p !== undefined).map((p) => p.describe()).join('\n');

describe('SciStream across network namespaces: producer and consumer on LANs that cannot reach each other', () => {
  const L = labForSuite();
  let gwa: NsProc | undefined;
  let gwb: NsProc | undefined;
  let producer: NsProc | undefined;
  let bundle = '';
  let map: StreamMap | undefined;
  let captured: { wan?: Buffer; aLan?: Buffer; wanLog: string; aLanLog: string; error?: string } | undefined;

  test('the consumer host cannot open a connection to the producer host; gateway A can', STEP, async () => {
    const lab = L();
    for (const gw of ['gwa', 'gwb'] as const) {
      assert.equal(await lab.sysctl(gw, 'net.ipv4.ip_forward'), '0', `${gw} must not forward IP between its interfaces`);
    }
    for (const h of ['prod', 'gwa', 'gwb', 'cons', 'user'] as Host[]) {
      assert.equal((await lab.ip(h, 'route', 'show', 'default')).trim(), '', `${h} must have no default route`);
    }
    const listener = lab.node('prod', 'probe listener', `require('node:net').createServer((s) => s.end()).listen(7000, '${ADDR.prod}', () => console.log('listening'))`);
    try {
      await listener.waitFor(/listening/, { stream: 'stdout' });
      for (const h of ['cons', 'user'] as const) {
        const r = await lab.tryConnect(h, PRODUCER_ADDR);
        assert.equal(r.connected, false, `${h} opened a connection to the producer at ${PRODUCER_ADDR}: the facilities are not isolated`);
        assert.match(r.error ?? '', /ENETUNREACH|EHOSTUNREACH|ETIMEDOUT/, `unexpected failure from ${h} to ${PRODUCER_ADDR}: ${r.output}`);
      }
      // Positive control: the producer listens, and its own gateway reaches it.
      const fromGwa = await lab.tryConnect('gwa', PRODUCER_ADDR);
      assert.equal(fromGwa.connected, true, `gateway A cannot reach the producer at ${PRODUCER_ADDR}: ${fromGwa.output}\n${listener.describe()}`);
    } finally {
      await listener.stop();
    }
  });

  test('both s2cs start with self-signed certificates; s2uc request and the producer Hello set up the stream', STEP, async () => {
    const lab = L();
    // Gateway A's data listeners face the WAN; gateway B's face the consumer on B LAN.
    // The clients trust both gateways through one bundle of their certificates.
    const started = await startLabGateways(lab, { portRange: PORT_RANGE, gwbFlags: ['--control-host', '0.0.0.0'] });
    ({ gwa, gwb, bundle } = started);

    // Without --tls-cert, each s2cs made itself a certificate and logged its fingerprint.
    for (const [gw, dir] of [[started.gwa, started.stateDirs.gwa], [started.gwb, started.stateDirs.gwb]] as const) {
      assert.ok(existsSync(join(dir, 'tls', 'key.pem')), `${gw.name} created no key.pem next to its certificate\n${gw.describe()}`);
      const fingerprint = new X509Certificate(readFileSync(join(dir, 'tls', 'cert.pem'), 'utf8')).fingerprint256.replace(/:/g, '');
      assert.ok(gw.stderr().replace(/:/g, '').toUpperCase().includes(fingerprint), `${gw.name} did not log its certificate's SHA-256 fingerprint ${fingerprint}\n${gw.describe()}`);
    }

    producer = lab.node('prod', 'marker producer', MARKER_PRODUCER, [ADDR.prod, '7000', MARKER, String(BYTES_PER_CONN)]);
    await producer.waitFor(/producer listening/, { stream: 'stdout' });

    const uid = `netns-${randomBytes(6).toString('hex')}`;
    // The producer reaches its gateway over A LAN, not the WAN.
    const parsed = await requestLabStream<StreamMap>(lab, { bundle, uid, numConn: NUM_CONN, producer: PRODUCER_ADDR, show: [gwa, gwb] });
    assert.equal(parsed.uid, uid);
    assert.deepEqual(parsed.prodAppListeners, [PRODUCER_ADDR], 'the producer listeners from its Hello');
    assert.equal(parsed.prodListeners.length, NUM_CONN, `gateway A's WAN listeners: ${JSON.stringify(parsed)}`);
    assert.equal(parsed.consListeners.length, NUM_CONN, `gateway B's listeners: ${JSON.stringify(parsed)}`);
    for (const l of parsed.prodListeners) assert.ok(l.startsWith(`${ADDR.gwaWan}:`), `gateway A listener ${l} is not on its WAN address ${ADDR.gwaWan}`);
    for (const l of parsed.consListeners) assert.ok(l.startsWith(`${ADDR.gwbLan}:`), `gateway B listener ${l} is not on its B LAN address ${ADDR.gwbLan}`);
    map = parsed;
  });

  test("the consumer receives exactly the producer's bytes on every connection, through both gateways", STEP, async () => {
    const lab = L();
    assert.ok(map && producer && gwa && gwb, 'the stream was not set up (see the previous failure)');
    // Capture from before the first byte until after the last: the whole WAN segment, and
    // A LAN (gwa <-> prod) where the data is in clear, as a positive control.
    const wanCapture = await lab.capture('wan', lab.ifaces.bridge, 'wan', { from: 'user', to: `${ADDR.gwaWan}:9` });
    const lanCapture = await lab.capture('gwa', lab.ifaces.gwaLan, 'a-lan', { from: 'gwa', to: `${ADDR.prod}:9` });
    try {
      const consumer = lab.node('cons', 'marker consumer', MARKER_CONSUMER, [MARKER, String(BYTES_PER_CONN), map.consListeners.join(',')]);
      const code = await consumer.exited;
      assert.equal(code, 0, `the consumer in cons did not receive the producer's ${BYTES_PER_CONN} bytes on each of ${map.consListeners.join(', ')}\n${logs(consumer, producer, gwa, gwb)}`);
      assert.equal(acceptedCount(producer), NUM_CONN, `the producer should have accepted one connection per stream connection\n${producer.describe()}`);
    } finally {
      const [wan, aLan] = await Promise.allSettled([wanCapture.stop(), lanCapture.stop()]);
      captured = {
        wan: wan.status === 'fulfilled' ? wan.value : undefined,
        aLan: aLan.status === 'fulfilled' ? aLan.value : undefined,
        wanLog: wanCapture.proc.stderr(),
        aLanLog: lanCapture.proc.stderr(),
        error: [wan, aLan].flatMap((r) => (r.status === 'rejected' ? [String((r.reason as Error).message)] : [])).join('\n') || undefined,
      };
    }
  });

  test('the stream crosses the WAN encrypted: its bytes go over, the clear-text marker never does', STEP, () => {
    assert.ok(captured, 'nothing was captured (see the previous failure)');
    assert.ok(captured.wan && captured.aLan, `tcpdump failed: ${captured.error}`);
    const { wan, aLan, wanLog, aLanLog } = captured;
    assert.ok(aLan.includes(MARKER), `positive control: the A LAN capture (${aLan.length} bytes) does not contain the marker the producer sent in clear\n${aLanLog}`);
    const streamed = NUM_CONN * BYTES_PER_CONN;
    assert.ok(wan.length >= streamed, `the WAN capture holds ${wan.length} bytes, fewer than the ${streamed} streamed: the data did not cross the WAN, or tcpdump dropped packets\n${wanLog}`);
    assert.equal(
      wan.indexOf(MARKER),
      -1,
      `the producer's clear-text marker appears in the WAN capture (${wan.length} bytes): the gateways forward the stream unencrypted between facilities`,
    );
  });

  test('a WAN host without credentials gets no data from gateway A, and the producer sees no extra connection', STEP, async () => {
    const lab = L();
    assert.ok(map && producer && gwa, 'the stream was not set up (see the previous failure)');
    const target = map.prodListeners[0]!;
    const acceptedBefore = acceptedCount(producer);
    const logFrom = gwa.stderr().length;
    for (const mode of ['tcp', 'tls'] as const) {
      const r = await lab.run('user', [process.execPath, '-e', ATTACKER_SCRIPT, mode, target, String(ATTACK_WAIT_MS)], { timeoutMs: ATTACK_WAIT_MS + 30_000 });
      const what = mode === 'tcp' ? 'plain TCP' : 'TLS without a client certificate';
      let result: { bytes: number; closed: boolean; events: string[] };
      try {
        result = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') as typeof result;
      } catch {
        assert.fail(`the ${what} attempt from user printed no result (exit ${r.code}): ${r.stdout}${r.stderr}`);
      }
      const detail = `${what} from user (${ADDR.user}) to gateway A's listener ${target}: ${JSON.stringify(result)}`;
      assert.equal(result.bytes, 0, `an unauthenticated WAN host received stream data. ${detail}\n${logs(gwa, producer)}`);
      assert.equal(result.closed, true, `gateway A left an unauthenticated connection open instead of refusing it. ${detail}`);
    }
    assert.equal(acceptedCount(producer), acceptedBefore, `gateway A connected to the producer on behalf of an unauthenticated WAN host\n${producer.describe()}`);
    await gwa.waitFor(/10\.201\.2\.3/, { stream: 'stderr', from: logFrom, timeoutMs: 15_000 }).catch((err: Error) => {
      assert.fail(`gateway A logged nothing about the refused connections from ${ADDR.user}: ${err.message}`);
    });
  });

  test('release on both gateways, then both s2cs stop cleanly on SIGTERM', STEP, async () => {
    const lab = L();
    assert.ok(map && gwa && gwb, 'the stream was not set up (see the previous failure)');
    const release = lab.cli('user', 's2uc', ['--server-cert', bundle, '--timeout', '60', 'release', map.uid, '--s2cs', GWA, '--s2cs', GWB]);
    assert.equal(await release.exited, 0, `s2uc release in user failed\n${logs(release, gwa, gwb)}`);
    assert.equal(await gwa.stop('SIGTERM'), 0, `s2cs in gwa did not exit 0 on SIGTERM\n${gwa.describe()}`);
    assert.equal(await gwb.stop('SIGTERM'), 0, `s2cs in gwb did not exit 0 on SIGTERM\n${gwb.describe()}`);
  });
});
