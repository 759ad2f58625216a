// Stream rates (issue 13): two s2cs processes with --rate-policy cap hold a stream to
// its stated rate over all its connections, each gateway on its own (the producer
// side through two local workers, which share the cap by listeners; the consumer
// side in process), over the TLS WAN leg; a capped stream does not hold back an
// uncapped one; --rate-policy reserve admits streams against --capacity.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { consume, type ConsumeResult } from '../../src/app/consume.js';
import { startProducer } from '../../src/app/produce.js';
import { sendHello } from '../../src/app/controller.js';
import { freePort, freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';
import { formatAddress, parseAddress } from '../../src/protocol/address.js';
import { RemoteError } from '../../src/protocol/client.js';
import { requestStream, releaseStream, type ConnectionMap } from '../../src/s2uc/flows.js';
import { streamStatus } from '../../src/s2uc/status.js';
import { tempDir } from '../support/agent.js';
import { startGateway } from '../support/gateway.js';

const OPTS = { insecure: true, deadlineMs: 20_000 };

interface Gateway {
  proc: Proc;
  address: string;
  dir: string;
}

async function gateway(extra: string[]): Promise<Gateway> {
  const port = await freePort();
  const range = await freePortRange(24);
  const dir = tempDir('scistream-rate-');
  const proc = spawnCli('s2cs', ['start', '--insecure', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--state-dir', dir, ...extra]);
  await proc.waitFor(/s2cs ready/, { timeoutMs: 20_000 });
  return { proc, address: `127.0.0.1:${port}`, dir };
}

let prod: Gateway;
let cons: Gateway;

before(async () => {
  [prod, cons] = await Promise.all([gateway(['--rate-policy', 'cap', '--workers', '2']), gateway(['--rate-policy', 'cap', '--workers', '0'])]);
});

after(async () => {
  for (const g of [prod, cons]) {
    if (!g) continue;
    assert.equal(await g.proc.stop('SIGTERM', 10_000), 0, g.proc.describe());
    rmSync(g.dir, { recursive: true, force: true });
  }
});

/** Sets up a stream between the two gateways to a new producer and streams `perConn` bytes on each connection. */
async function stream(numConn: number, rateKBps: number, perConn: number, seed: number): Promise<{ map: ConnectionMap; result: Promise<ConsumeResult>; done: () => Promise<void> }> {
  const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: perConn, seed });
  const hellos: Promise<unknown>[] = [];
  const uid = randomUUID();
  const map = await requestStream(prod.address, cons.address, { numConn, rate: rateKBps, uid }, {
    ...OPTS,
    onAppSecret: (secret, server, role) => {
      if (role === 'PROD') hellos.push(sendHello(server, uid, 'PROD', producer.addresses.map(formatAddress), { ...OPTS, appSecret: secret }));
    },
  });
  await Promise.all(hellos);
  const result = consume({ connect: map.consListeners.map((l) => parseAddress(l, 'listener')), bytes: perConn, seed });
  return {
    map,
    result,
    done: async () => {
      await result.catch(() => undefined);
      await releaseStream(uid, [prod.address, cons.address], OPTS);
      await producer.close();
    },
  };
}

describe('--rate-policy cap', () => {
  for (const numConn of [2, 8]) {
    test(`a stream over ${numConn} connections arrives within 10 % of its rate over more than 5 s`, async (t) => {
      const rateKBps = 10_000; // 80 Mbit/s: far below what this path carries, so only the cap can hold it there
      const seconds = 6;
      const perConn = Math.floor((rateKBps * 1000 * seconds) / numConn);
      const s = await stream(numConn, rateKBps, perConn, 7 + numConn);
      try {
        assert.deepEqual(s.map.ratePolicies, { prod: 'cap', cons: 'cap' });
        // Both gateways report the cap while the stream runs.
        const [p, c] = await Promise.all([streamStatus(prod.address, s.map.uid, OPTS), streamStatus(cons.address, s.map.uid, OPTS)]);
        assert.equal(p.ratePolicy, 'cap');
        assert.equal(p.streams[0]!.capBps, rateKBps * 1000);
        assert.equal(c.streams[0]!.capBps, rateKBps * 1000);
        assert.equal(p.streams[0]!.rate, rateKBps);
        const r = await s.result;
        assert.equal(r.bytes, perConn * numConn, 'every byte arrived, verified');
        assert.ok(r.seconds > 5, `took ${r.seconds.toFixed(2)} s`);
        const achieved = r.bytes / r.seconds / 1000;
        t.diagnostic(`${numConn} connections: ${achieved.toFixed(0)} kB/s over ${r.seconds.toFixed(2)} s (cap ${rateKBps} kB/s)`);
        assert.ok(Math.abs(achieved - rateKBps) <= rateKBps * 0.1, `achieved ${achieved.toFixed(0)} kB/s against a cap of ${rateKBps} kB/s over ${r.seconds.toFixed(2)} s`);
        // Every connection moved: the cap is shared, not taken by one.
        for (const pc of r.perConnection) assert.equal(pc.received, perConn);
      } finally {
        await s.done();
      }
    });
  }

  test('a capped stream next to an uncapped one does not hold the uncapped one to its cap', async (t) => {
    const capKBps = 2_000; // 16 Mbit/s
    const capped = await stream(2, capKBps, capKBps * 1000 * 4, 21);
    try {
      // rate 0: none stated, so not capped even under --rate-policy cap.
      const free = await stream(2, 0, 40 * 1024 * 1024, 22);
      try {
        const r = await free.result;
        assert.equal(r.bytes, 80 * 1024 * 1024);
        const kBps = r.bytes / r.seconds / 1000;
        t.diagnostic(`uncapped: ${kBps.toFixed(0)} kB/s next to a stream capped at ${capKBps} kB/s`);
        assert.ok(kBps > 4 * capKBps, `the uncapped stream ran at ${kBps.toFixed(0)} kB/s, next to one capped at ${capKBps} kB/s`);
        const status = await streamStatus(prod.address, free.map.uid, OPTS);
        assert.equal(status.streams[0]!.capBps, 0);
      } finally {
        await free.done();
      }
      await capped.result;
    } finally {
      await capped.done();
    }
  });
});

describe('--rate-policy reserve', () => {
  test('admits against --capacity, refuses with what is free, admits again once capacity frees; a req stating no rate is refused', async () => {
    const g = await startGateway({ ratePolicy: 'reserve', capacityBps: 12_500_000 }); // 100 Mbit/s
    try {
      const req = (uid: string, rate: number) => g.client.req({ uid, role: 'CONS', num_conn: 1, rate });
      await req('first', 7_500); // 60 Mbit/s
      const refused = await req('second', 7_500).then(
        () => assert.fail('admitted beyond capacity'),
        (err: unknown) => err as RemoteError,
      );
      assert.equal(refused.status, 'RESOURCE_EXHAUSTED');
      assert.match(refused.details, /asks for 60 Mbit\/s.*hold 60 Mbit\/s of its 100 Mbit\/s \(--capacity\) and 40 Mbit\/s is free/);
      const none = await req('unstated', 0).then(
        () => assert.fail('admitted a stream stating no rate'),
        (err: unknown) => err as RemoteError,
      );
      assert.equal(none.status, 'INVALID_ARGUMENT');
      assert.match(none.details, /states no rate.*--rate/);
      const s = await g.client.status({ uid: '' });
      assert.equal(s.rate_policy, 'reserve');
      assert.equal(Number(s.capacity_bps), 12_500_000);
      assert.equal(Number(s.reserved_bps), 7_500_000);
      assert.ok(s.refusals.some((r) => r.kind === 'capacity' && Number(r.count) === 2));
      await req('fits', 5_000); // the 40 Mbit/s left
      await g.client.release({ uid: 'first' });
      await req('second', 7_500);
      const after = await g.client.status({ uid: '' });
      assert.equal(Number(after.reserved_bps), 12_500_000);
    } finally {
      await g.close();
    }
  });

  test('s2cs refuses reserve without --capacity, and --capacity without reserve, in one line (exit 2)', async () => {
    for (const [args, re] of [
      [['--rate-policy', 'reserve'], /--rate-policy reserve admits streams against --capacity/],
      [['--capacity', '1Gbit/s'], /--capacity is what --rate-policy reserve admits streams against/],
      [['--rate-policy', 'reserve', '--capacity', 'fast'], /invalid rate "fast"/],
    ] as const) {
      const p = spawnCli('s2cs', ['start', '--insecure', '--port', '0', '--listener-ip', '127.0.0.1', ...args]);
      assert.equal(await p.exited, 2, p.describe());
      const lines = p.stderr().trim().split('\n');
      assert.equal(lines.length, 1, p.describe());
      assert.match(lines[0]!, re);
    }
  });
});
