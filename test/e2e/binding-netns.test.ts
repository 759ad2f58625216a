// Issue 18, point 5, across network namespaces: with --auth none, a WAN host that did
// not request a stream cannot take it. The stream is requested with s2uc from gateway
// B's host (its own SCISTREAM_HOME keeps the control secrets); the 'user' host is the
// attacker on the WAN: it re-sends the req, sends an update with its own credentials
// and targets (the exfiltration measured before: 162 MB reached the attacker in 3 s),
// releases, asks status, and dials gateway A's WAN listener with its own certificate.
// Every control call is PERMISSION_DENIED, status hides the stream's addresses, no
// byte reaches the attacker, and the consumer still gets exactly the producer's bytes.
// Needs root and iproute2 (see test/support/netns.ts).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ADDR, labForSuite, type NsProc } from '../support/netns.js';
import { LAB_CONTROL, requestLabStream, startLabGateways } from '../support/lab-gateways.js';
import { acceptedCount, MARKER_CONSUMER, MARKER_PRODUCER } from '../support/marker-apps.js';

const NUM_CONN = 2;
const BYTES_PER_CONN = 8 * 1024 * 1024;
const MARKER = `SCISTREAM-BINDING-${randomBytes(8).toString('hex')}`;
const PRODUCER_ADDR = `${ADDR.prod}:7000`;
const GWA = LAB_CONTROL.gwa;
const GWB = LAB_CONTROL.gwb;
const PORT_RANGE = '5100-5120';
const STEP = { timeout: 180_000 };
/** How long the attacker's WAN connection waits for data. */
const ATTACK_READ_MS = 8000;

/**
 * The attacker on the WAN, with the library: req again, update with its own credentials
 * and targets (with no secret, then a made-up one), release, status; then TLS to gateway
 * A's WAN listener with the certificate it tried to install. Prints one JSON object.
 */
const ATTACKER_SCRIPT = `
const [clientUrl, credsUrl, server, bundle, uid, producer, listener, readMs] = process.argv.slice(1);
(async () => {
  const { ControlConnection } = await import(clientUrl);
  const { createStreamCredentials } = await import(credsUrl);
  const out = {};
  const c = await ControlConnection.open(server, { insecure: false, deadlineMs: 15000, tls: { serverCert: bundle } });
  const creds = await createStreamCredentials(uid);
  const attempt = async (name, fn) => {
    const t0 = Date.now();
    try { out[name] = { ok: true, answer: await fn() }; } catch (e) { out[name] = { ok: false, status: e.status, message: e.details ?? e.message }; }
    out[name].ms = Date.now() - t0;
  };
  await attempt('req', () => c.req({ uid, role: 'PROD', num_conn: ${NUM_CONN}, rate: 0 }, 15000));
  await attempt('update', () => c.update({ uid, remote_listeners: [producer], role: 'PROD', credentials: creds.producerSide }));
  await attempt('updateWrongSecret', () => c.update({ uid, remote_listeners: [producer], role: 'PROD', credentials: creds.producerSide, control_secret: 'A'.repeat(43) }));
  await attempt('release', () => c.release({ uid }));
  await attempt('status', () => c.status({ uid: '' }));
  c.close();
  // The WAN listener, with the certificate the refused update would have installed.
  const i = listener.lastIndexOf(':');
  out.wan = await new Promise((resolve) => {
    const r = { bytes: 0, events: [] };
    const s = require('node:tls').connect({ host: listener.slice(0, i), port: Number(listener.slice(i + 1)), cert: creds.consumerSide.certificate, key: creds.consumerSide.private_key, rejectUnauthorized: false });
    s.on('secureConnect', () => r.events.push('secureConnect'));
    s.on('data', (d) => { r.bytes += d.length; });
    s.on('error', (e) => r.events.push('error ' + (e.code || e.message)));
    const timer = setTimeout(() => { r.events.push('open after ' + readMs + ' ms'); s.destroy(); resolve(r); }, Number(readMs));
    s.on('close', () => { clearTimeout(timer); r.events.push('closed'); resolve(r); });
  });
  console.log(JSON.stringify(out));
})().catch((e) => { console.log(JSON.stringify({ crashed: String(e && e.stack || e) })); process.exit(1); });
`;

interface Attempt {
  ok: boolean;
  status?: string;
  message?: string;
  answer?: unknown;
}

const logs = (...procs: (NsProc | undefined)[]) => procs.filter((p): p is NsProc => p !== undefined).map((p) => p.describe()).join('\n');

describe("with --auth none, a WAN host cannot take another's stream (network namespaces)", () => {
  const L = labForSuite();
  let gwa: NsProc | undefined;
  let gwb: NsProc | undefined;
  let producer: NsProc | undefined;
  let bundle = '';
  let map: { uid: string; prodListeners: string[]; consListeners: string[]; prodControlSecret: string; consControlSecret: string } | undefined;

  test("s2uc on gateway B's host sets the stream up; its control secrets are kept mode 600", STEP, async () => {
    const lab = L();
    ({ gwa, gwb, bundle } = await startLabGateways(lab, { portRange: PORT_RANGE, workers: 1, gwbFlags: ['--control-host', '0.0.0.0'] }));

    producer = lab.node('prod', 'marker producer', MARKER_PRODUCER, [ADDR.prod, '7000', MARKER, String(BYTES_PER_CONN)]);
    await producer.waitFor(/producer listening/, { stream: 'stdout' });
    const uid = `bind-${randomBytes(6).toString('hex')}`;
    map = await requestLabStream<NonNullable<typeof map>>(lab, { from: 'gwb', bundle, uid, numConn: NUM_CONN, producer: PRODUCER_ADDR, show: [gwa, gwb] });
    assert.match(map.prodControlSecret, /^[A-Za-z0-9_-]{43}$/, 'request --json prints the producer gateway\'s control secret');
    assert.match(map.consControlSecret, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(map.prodControlSecret, map.consControlSecret, 'each gateway issues its own');
    const dir = join(lab.home('gwb'), 'control-secrets', uid);
    const files = readdirSync(dir);
    assert.equal(files.length, 2, `one secret file per gateway in ${dir}: ${files.join(', ')}`);
    for (const f of files) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, `${f} is readable by its owner only`);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
  });

  test('the attacker on the WAN: req, update with its own credentials and targets, release are PERMISSION_DENIED; status hides the addresses; its TLS gets no byte', STEP, async (t) => {
    const lab = L();
    assert.ok(map && gwa && producer, 'the stream was not set up (see the previous failure)');
    const clientUrl = new URL('../../src/protocol/client.js', import.meta.url).href;
    const credsUrl = new URL('../../src/security/stream-credentials.js', import.meta.url).href;
    const acceptedBefore = acceptedCount(producer);
    const run = await lab.run('user', [process.execPath, '-e', ATTACKER_SCRIPT, clientUrl, credsUrl, GWA, bundle, map.uid, PRODUCER_ADDR, map.prodListeners[0]!, String(ATTACK_READ_MS)], { timeoutMs: 90_000 });
    let r: Record<string, Attempt> & { wan: { bytes: number; events: string[] }; crashed?: string };
    try {
      r = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '') as typeof r;
    } catch {
      assert.fail(`the attacker printed no result (exit ${run.code}): ${run.stdout}${run.stderr}`);
    }
    assert.equal(r.crashed, undefined, r.crashed);
    for (const name of ['req', 'update', 'updateWrongSecret', 'release'] as const) t.diagnostic(`attacker ${name}: ${r[name]!.status ?? 'OK'} after ${(r[name] as Attempt & { ms: number }).ms} ms`);
    t.diagnostic(`attacker on gateway A's WAN listener with its own certificate: ${r.wan.bytes} bytes, ${r.wan.events.join(', ')}`);
    const detail = `${JSON.stringify(r)}\n${logs(gwa)}`;
    for (const name of ['req', 'update', 'updateWrongSecret', 'release'] as const) {
      assert.equal(r[name]!.ok, false, `the attacker's ${name} was accepted: ${detail}`);
      assert.equal(r[name]!.status, 'PERMISSION_DENIED', `${name}: ${detail}`);
    }
    assert.match(r.update!.message!, /is bound to the control secret its request was answered with/);
    assert.match(r.updateWrongSecret!.message!, /the control secret given does not match stream/);
    assert.match(r.req!.message!, /was requested from another address/);
    // status: the stream is listed, without where it listens or forwards to.
    const status = r.status!.answer as { streams: { uid: string; listeners: string[]; prod_listeners: string[]; targets: string[]; redacted: boolean }[] };
    const row = status.streams.find((s) => s.uid === map!.uid);
    assert.ok(row, `status lists the stream: ${JSON.stringify(status)}`);
    assert.deepEqual([row.listeners, row.prod_listeners, row.targets, row.redacted], [[], [], [], true], JSON.stringify(row));
    // The WAN listener still pins the legitimate consumer gateway's certificate.
    assert.equal(r.wan.bytes, 0, `the attacker received stream data: ${detail}`);
    assert.ok(!r.wan.events.includes(`open after ${ATTACK_READ_MS} ms`), `gateway A left the attacker's connection open: ${JSON.stringify(r.wan)}`);
    assert.equal(acceptedCount(producer), acceptedBefore, `gateway A connected to the producer for the attacker\n${producer.describe()}`);
    // s2uc release and status from the attacker's host (no secrets in its home): refused, redacted.
    const rel = lab.cli('user', 's2uc', ['--server-cert', bundle, 'release', map.uid, '--s2cs', GWA, '--s2cs', GWB]);
    assert.notEqual(await rel.exited, 0, `s2uc release from the attacker succeeded\n${rel.describe()}`);
    assert.match(rel.stderr(), /PERMISSION_DENIED/);
    const st = lab.cli('user', 's2uc', ['--server-cert', bundle, 'status', '--s2cs', GWA, '--s2cs', GWB, '--json']);
    assert.equal(await st.exited, 0, st.describe());
    const report = JSON.parse(st.stdout()) as { gateways: { streams: { uid: string; listeners: string[]; targets: string[]; redacted: boolean }[] }[] };
    for (const g of report.gateways) {
      const s = g.streams.find((x) => x.uid === map!.uid);
      assert.ok(s, st.stdout());
      assert.deepEqual([s.listeners, s.targets, s.redacted], [[], [], true]);
    }
  });

  test("the consumer still gets exactly the producer's bytes; the requester sees its stream in full and releases it with the kept secrets", STEP, async () => {
    const lab = L();
    assert.ok(map && gwa && gwb && producer, 'the stream was not set up (see the previous failure)');
    const consumer = lab.node('cons', 'marker consumer', MARKER_CONSUMER, [MARKER, String(BYTES_PER_CONN), map.consListeners.join(',')]);
    assert.equal(await consumer.exited, 0, `the consumer did not receive the producer's bytes\n${logs(consumer, producer, gwa, gwb)}`);
    const st = lab.cli('gwb', 's2uc', ['--server-cert', bundle, 'status', map.uid, '--s2cs', GWA, '--json']);
    assert.equal(await st.exited, 0, st.describe());
    const row = (JSON.parse(st.stdout()) as { gateways: { streams: { listeners: string[]; targets: string[]; redacted: boolean }[] }[] }).gateways[0]!.streams[0]!;
    assert.deepEqual([row.listeners, row.targets, row.redacted], [map.prodListeners, [PRODUCER_ADDR], false]);
    const release = lab.cli('gwb', 's2uc', ['--server-cert', bundle, 'release', map.uid, '--s2cs', GWA, '--s2cs', GWB]);
    assert.equal(await release.exited, 0, `the requester's release failed\n${logs(release, gwa, gwb)}`);
    assert.throws(() => readdirSync(join(lab.home('gwb'), 'control-secrets', map!.uid)), 'released: the secrets are removed');
    assert.equal(await gwa.stop('SIGTERM'), 0, gwa.describe());
    assert.equal(await gwb.stop('SIGTERM'), 0, gwb.describe());
  });
});
