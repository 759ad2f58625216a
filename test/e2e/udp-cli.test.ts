// UDP streams set up with the CLIs as separate processes: s2uc inbound-request --protocol
// udp through one gateway, numbered and checksummed datagrams, status text and --json.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli as run, startCliGateway as startS2cs } from '../support/cli-gateway.js';
import { parseAddress } from '../../src/protocol/address.js';
import { sendSequence, settled, udpEcho, udpSender } from '../support/datagrams.js';

const HOME = mkdtempSync(join(tmpdir(), 'scistream-udp-home-'));
process.env.SCISTREAM_HOME = HOME;
after(() => rmSync(HOME, { recursive: true, force: true }));

interface UdpStatus {
  gateways: { streams: { uid: string; protocol?: string; datagrams?: { toTarget: number; fromTarget: number; flows: number; drops: Record<string, number> } }[] }[];
}

for (const workers of ['0', '1']) {
  test(`s2uc inbound-request --protocol udp carries verified datagrams through one gateway (--workers ${workers})`, async () => {
    const gw = await startS2cs(['--allow-plaintext-data', '--workers', workers, '--udp-idle-timeout', '2']);
    const echo = await udpEcho();
    const senders = await Promise.all([2, 3, 4].map((i) => udpSender(i, `127.0.0.${i}`)));
    try {
      const r = await run('s2uc', ['--insecure', 'inbound-request', '--s2cs', gw.address, '--protocol', 'udp', '--targets', `127.0.0.1:${echo.address.port}`, '--num-conn', '1', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const { uid, listeners } = JSON.parse(r.stdout) as { uid: string; listeners: string[] };
      const listener = parseAddress(listeners[0]!, 'listener');
      const count = 1000;
      await Promise.all(senders.map((s, i) => sendSequence(s, i + 2, listener, count, 1000, 8, 5)));
      await settled(() => senders.reduce((n, s) => n + s.tally.seen.size, 0));
      for (const s of senders) {
        const t = s.tally;
        console.log(`# sender ${t.sender}: sent ${count}, back ${t.seen.size}, lost ${t.lost(count)}, dup ${t.duplicates}, reordered ${t.reordered}, corrupt ${t.corrupt}, foreign ${t.foreign}`);
        assert.equal(t.corrupt, 0);
        assert.equal(t.duplicates, 0);
        assert.equal(t.foreign, 0);
        // Loopback through a separate process: loss is reported, bounded loosely.
        assert.ok(t.seen.size >= count / 2, `sender ${t.sender}: ${t.seen.size} of ${count} came back`);
      }
      // Status: the protocol and the datagram counters, in --json and in text. Agents' counters arrive with their next poll.
      let stream: UdpStatus['gateways'][number]['streams'][number] | undefined;
      for (let i = 0; i < 50; i++) {
        const s = await run('s2uc', ['--insecure', 'status', '--s2cs', gw.address, '--json']);
        stream = (JSON.parse(s.stdout) as UdpStatus).gateways[0]!.streams.find((x) => x.uid === uid);
        if ((stream?.datagrams?.fromTarget ?? 0) >= echo.received()) break;
        await new Promise((res) => setTimeout(res, 200));
      }
      assert.equal(stream!.protocol, 'udp');
      assert.equal(stream!.datagrams!.flows, 3);
      assert.equal(stream!.datagrams!.fromTarget, echo.received());
      const text = await run('s2uc', ['--insecure', 'status', '--s2cs', gw.address]);
      assert.match(text.stdout, /UDP/);
      assert.match(text.stdout, /datagrams\s+\d+ to target, \d+ from target; dropped: none/);
      // --udp-idle-timeout 2: the flows end a little after 2 s without datagrams.
      const quiet = Date.now();
      for (;;) {
        const s = await run('s2uc', ['--insecure', 'status', '--s2cs', gw.address, '--json']);
        const st = (JSON.parse(s.stdout) as UdpStatus).gateways[0]!.streams.find((x) => x.uid === uid);
        if (st!.datagrams!.flows === 0) break;
        assert.ok(Date.now() - quiet < 10_000, 'idle flows end within 10 s');
        await new Promise((res) => setTimeout(res, 250));
      }
      console.log(`# idle flows gone ${Date.now() - quiet} ms after the status checks began (--udp-idle-timeout 2, counted from the last datagram, earlier)`);
      const rel = await run('s2uc', ['--insecure', 'release', '--s2cs', gw.address, uid]);
      assert.equal(rel.code, 0, rel.stderr);
    } finally {
      await Promise.all(senders.map((s) => s.close()));
      await echo.close();
      await gw.proc.stop();
    }
  });
}

test('s2uc --protocol other than tcp or udp is a usage error', async () => {
  const r = await run('s2uc', ['--insecure', 'inbound-request', '--s2cs', '127.0.0.1:1', '--protocol', 'sctp', '--targets', '127.0.0.1:9']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--protocol/);
});
