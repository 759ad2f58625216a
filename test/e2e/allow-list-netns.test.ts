// Issue 20, points 2 and 3, across network namespaces: a two-gateway stream whose
// producer gateway's WAN listeners accept only the consumer gateway (s2uc request
// --wan-allow-from), on ports chosen for the firewall (--wan-listener-ports,
// --listener-ports), and whose consumer gateway's listeners accept only the consumer
// host (--allow-from). The 'user' host on the WAN is the attacker: its connection to a
// WAN listener is reset at once, with no byte and no TLS handshake, counted as
// allow-list; the consumer still gets exactly the producer's bytes.
// Needs root and iproute2 (see test/support/netns.ts).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ADDR, labForSuite, type NsProc } from '../support/netns.js';
import { LAB_CONTROL, requestLabStream, startLabGateways } from '../support/lab-gateways.js';
import { MARKER_CONSUMER, MARKER_PRODUCER } from '../support/marker-apps.js';

const NUM_CONN = 2;
const BYTES_PER_CONN = 4 * 1024 * 1024;
const MARKER = `SCISTREAM-ALLOW-${randomBytes(8).toString('hex')}`;
const PRODUCER_ADDR = `${ADDR.prod}:7000`;
const STEP = { timeout: 180_000 };

/** Connects, sends a few bytes, and says how the connection ended and what came back. */
const PROBE = `
const [host, port] = process.argv.slice(1);
const r = { connected: false, bytes: 0, end: '' };
const s = require('node:net').connect({ host, port: Number(port) });
const done = (end) => { if (r.end) return; r.end = end; console.log(JSON.stringify(r)); s.destroy(); process.exit(0); };
s.setTimeout(5000, () => done('open after 5 s'));
s.on('connect', () => { r.connected = true; s.write('\\x16\\x03\\x01 hello'); });
s.on('data', (d) => { r.bytes += d.length; });
s.on('error', (e) => done(e.code || e.message));
s.on('end', () => done('end'));
`;

const logs = (...procs: (NsProc | undefined)[]) => procs.filter((p): p is NsProc => p !== undefined).map((p) => p.describe()).join('\n');

describe('allow-lists and chosen ports across two facilities (network namespaces)', () => {
  const L = labForSuite();

  test('the WAN listeners take only the consumer gateway, on the chosen ports; the attacker on the WAN is reset and counted', STEP, async (t) => {
    const lab = L();
    const { gwa, gwb, bundle } = await startLabGateways(lab, { portRange: '5100-5120', workers: 1 });
    const producer = lab.node('prod', 'marker producer', MARKER_PRODUCER, [ADDR.prod, '7000', MARKER, String(BYTES_PER_CONN)]);
    try {
      await producer.waitFor(/producer listening/, { stream: 'stdout' });
      const uid = `allow-${randomBytes(6).toString('hex')}`;
      const map = await requestLabStream(lab, {
        bundle,
        uid,
        numConn: NUM_CONN,
        producer: PRODUCER_ADDR,
        requestArgs: ['--wan-allow-from', ADDR.gwbWan, '--wan-listener-ports', '5105,5106', '--allow-from', ADDR.cons, '--listener-ports', '5110,5111'],
        show: [gwa, gwb],
      });
      assert.deepEqual(map.prodListeners, [`${ADDR.gwaWan}:5105`, `${ADDR.gwaWan}:5106`]);
      assert.deepEqual(map.consListeners, [`${ADDR.gwbLan}:5110`, `${ADDR.gwbLan}:5111`]);

      // The attacker reaches the WAN listener's port but is reset before any handshake.
      const run = await lab.run('user', [process.execPath, '-e', PROBE, ADDR.gwaWan, '5105'], { timeoutMs: 30_000 });
      const probe = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as { connected: boolean; bytes: number; end: string };
      t.diagnostic(`attacker on gateway A's WAN listener: ${JSON.stringify(probe)}`);
      assert.equal(probe.bytes, 0, `the attacker got bytes: ${JSON.stringify(probe)}`);
      assert.equal(probe.end, 'ECONNRESET', `refused with a reset: ${JSON.stringify(probe)}\n${logs(gwa)}`);

      // The consumer host (allowed at gateway B), through gateway B (allowed at gateway A).
      const consumer = lab.node('cons', 'marker consumer', MARKER_CONSUMER, [MARKER, String(BYTES_PER_CONN), map.consListeners.join(',')]);
      assert.equal(await consumer.exited, 0, `the consumer did not receive the producer's bytes\n${logs(consumer, producer, gwa, gwb)}`);

      // The worker counts it; s2cs learns it at its next poll of the worker.
      let report = '';
      for (const end = Date.now() + 15_000; Date.now() < end; await new Promise((r) => setTimeout(r, 500))) {
        const st = lab.cli('user', 's2uc', ['--server-cert', bundle, 'status', '--s2cs', LAB_CONTROL.gwa, '--json']);
        assert.equal(await st.exited, 0, st.describe());
        report = st.stdout();
        if (/"refusals":\{[^}]*"allow-list":1/.test(report)) break;
      }
      assert.match(report, /"refusals":\{[^}]*"allow-list":1[,}]/, report);
      assert.match(gwa.stderr(), /refused a connection from 10\.201\.2\.3 to listener port 5105 of stream allow-[0-9a-f]+: its source is not in the stream's allow-list \(10\.201\.2\.2\/32\)/);

      const release = lab.cli('user', 's2uc', ['--server-cert', bundle, 'release', uid, '--s2cs', LAB_CONTROL.gwa, '--s2cs', LAB_CONTROL.gwb]);
      assert.equal(await release.exited, 0, logs(release, gwa, gwb));
    } finally {
      await producer.stop('SIGTERM');
      assert.equal(await gwa.stop('SIGTERM'), 0, gwa.describe());
      assert.equal(await gwb.stop('SIGTERM'), 0, gwb.describe());
    }
  });
});
