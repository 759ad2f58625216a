// Our client against a gateway that behaves like the Python reference's s2cs
// (test/support/reference-gateway.ts): the flow matrix of issue 10, with real
// sockets and verified bytes.
import { after, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { controlSecretsOf, inboundRequest, outboundRequest, releaseStream, request1, requestStream, type FlowOptions } from '../../src/s2uc/flows.js';
import { sendHello } from '../../src/app/controller.js';
import { startProducer, type Producer } from '../../src/app/produce.js';
import { consume } from '../../src/app/consume.js';
import { RemoteError } from '../../src/protocol/client.js';
import { parseAddress, formatAddress } from '../../src/protocol/address.js';
import { startReferenceGateway, type ReferenceGateway, type ReferenceGatewayOptions } from '../support/reference-gateway.js';
import { startGateway, type TestGateway } from '../support/gateway.js';

// $SCISTREAM_HOME: a directory of this run's (the s2uc CLI records each uid's gateways there).
const HOME = mkdtempSync(join(tmpdir(), 'scistream-refgw-home-'));
process.env.SCISTREAM_HOME = HOME;
after(() => rmSync(HOME, { recursive: true, force: true }));

const BYTES = 2 * 1024 * 1024;
const S2UC = fileURLToPath(new URL('../../../bin/s2uc.js', import.meta.url));
const opts = (extra: Partial<FlowOptions> = {}): FlowOptions => ({ insecure: true, deadlineMs: 10_000, ...extra });

async function producer(n: number, seed: number): Promise<Producer> {
  return startProducer({ listen: Array.from({ length: n }, () => ({ host: '127.0.0.1', port: 0 })), bytes: BYTES, seed, count: n });
}

async function verified(listeners: string[], seed: number): Promise<number> {
  const r = await consume({ connect: listeners.map((l) => parseAddress(l)), bytes: BYTES, seed });
  return r.bytes;
}

async function using<T>(fn: (ref: ReferenceGateway) => Promise<T>, extra: Omit<ReferenceGatewayOptions, 'helloTimeoutMs'> = {}): Promise<T> {
  const ref = await startReferenceGateway({ helloTimeoutMs: 20_000, ...extra });
  try {
    return await fn(ref);
  } finally {
    await ref.close();
  }
}

function s2uc(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [S2UC, '--insecure', ...args], { timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

test('inbound-request to a reference-like gateway: s2uc sends the Hello itself, bytes flow', async () => {
  await using(async (ref) => {
    const p = await producer(2, 21);
    try {
      const r = await inboundRequest(ref.address, p.addresses.map(formatAddress), { numConn: 2 }, opts());
      assert.equal(r.listeners.length, 2);
      assert.ok(ref.calls.hello >= 1);
      assert.equal(await verified(r.listeners, 21), 2 * BYTES);
      await releaseStream(r.uid, [ref.address], opts());
    } finally {
      await p.close();
    }
  });
});

test("request1 to a reference-like gateway with the producer's controller (s2app hello), bytes flow", async () => {
  await using(async (ref) => {
    const p = await producer(2, 22);
    try {
      const uid = 'ref-request1';
      const [r] = await Promise.all([
        request1(ref.address, { numConn: 2, uid }, opts()),
        // Sent before the req exists: the reference says `entry not found`, and it is retried.
        sendHello(ref.address, uid, 'PROD', p.addresses.map(formatAddress), { insecure: true, deadlineMs: 10_000 }),
      ]);
      assert.equal(await verified(r.listeners, 22), 2 * BYTES);
      await releaseStream(uid, [ref.address], opts());
    } finally {
      await p.close();
    }
  });
});

test('outbound-request to a reference-like gateway: answered without a hand-sent Hello, bytes flow', async () => {
  await using(async (ref) => {
    // The producer stands in for the remote gateway's WAN listeners.
    const p = await producer(2, 23);
    try {
      const r = await outboundRequest(ref.address, p.addresses.map(formatAddress), { numConn: 2 }, opts());
      assert.ok(ref.calls.hello >= 1, 's2uc sent the Hello the reference waits for');
      assert.equal(await verified(r.listeners, 23), 2 * BYTES);
      await releaseStream(r.uid, [ref.address], opts());
    } finally {
      await p.close();
    }
  });
});

test('release twice on a reference-like gateway: both succeed', async () => {
  await using(async (ref) => {
    const p = await producer(1, 24);
    try {
      const r = await inboundRequest(ref.address, p.addresses.map(formatAddress), { numConn: 1 }, opts());
      await releaseStream(r.uid, [ref.address], opts());
      await releaseStream(r.uid, [ref.address], opts());
      assert.equal(ref.calls.release, 2);
      assert.equal(ref.streams(), 0);
      // Other errors still fail.
      await assert.rejects(releaseStream(r.uid, ['127.0.0.1:1'], opts({ deadlineMs: 2000 })), RemoteError);
    } finally {
      await p.close();
    }
  });
});

for (const side of ['producer', 'consumer'] as const) {
  test(`request with a reference-like gateway on the ${side} side is refused before anything is reserved`, async () => {
    await using(async (ref) => {
      const ours: TestGateway = await startGateway();
      try {
        const [prod, cons] = side === 'producer' ? [ref.address, ours.address] : [ours.address, ref.address];
        await assert.rejects(requestStream(prod, cons, { numConn: 2 }, opts()), (err: Error) => {
          assert.match(err.message, new RegExp(`${ref.address} answers like the Python reference's s2cs`));
          assert.match(err.message, /cannot take per-stream credentials/);
          assert.match(err.message, /Nothing was reserved/);
          assert.match(err.message, /--allow-plaintext-data/);
          return true;
        });
        assert.equal(ref.calls.req, 0);
        assert.equal((await ours.client.status({ uid: '' })).streams.length, 0);
      } finally {
        await ours.close();
      }
    });
  });

  test(`request with --allow-plaintext-data and a reference-like ${side} gateway: no credentials, a warning, plain TCP, bytes flow`, async () => {
    await using(async (ref) => {
      const ours = await startGateway();
      const p = await producer(2, 25);
      try {
        const [prod, cons] = side === 'producer' ? [ref.address, ours.address] : [ours.address, ref.address];
        const warnings: string[] = [];
        const uid = `plain-${side}`;
        const [map] = await Promise.all([
          requestStream(prod, cons, { numConn: 2, uid }, opts({ allowPlaintextData: true, onWarning: (w) => warnings.push(w) })),
          sendHello(prod, uid, 'PROD', p.addresses.map(formatAddress), { insecure: true, deadlineMs: 10_000 }),
        ]);
        assert.equal(map.wan, 'plain');
        assert.equal(warnings.length, 1);
        assert.match(warnings[0]!, /neither encrypted nor authenticated by SciStream/);
        const s = await ours.client.status({ uid });
        assert.equal(s.streams[0]?.state, 'ready');
        assert.equal(await verified(map.consListeners, 25), 2 * BYTES);
        await releaseStream(uid, [prod, cons], opts({ controlSecretFor: controlSecretsOf(map) }));
      } finally {
        await p.close();
        await ours.close();
      }
    });
  });
}

test('s2uc CLI: request refused with a reference-like gateway (exit 1, one line); release twice exits 0', async () => {
  await using(async (ref) => {
    const ours = await startGateway();
    try {
      const r = await s2uc(['request', '--prod-s2cs', ref.address, '--cons-s2cs', ours.address]);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      const errors = r.stderr.split('\n').filter((l) => l.startsWith('s2uc: error:'));
      assert.equal(errors.length, 1, r.stderr);
      assert.match(errors[0]!, /cannot take per-stream credentials.*Nothing was reserved.*--allow-plaintext-data/);
      assert.equal(ref.calls.req, 0);
      for (let i = 0; i < 2; i++) {
        const rel = await s2uc(['release', 'gone-uid', '--s2cs', ref.address]);
        assert.equal(rel.code, 0, rel.stderr);
        assert.match(rel.stdout, /Release completed: gone-uid/);
      }
    } finally {
      await ours.close();
    }
  });
});

// The reference's s2cs publishes a stream before its listeners: a Hello in between gets
// UNKNOWN "Exception calling application: 'listeners'" (1 to 3 in 15 live runs). The
// stand-in answers the first Hellos so every time; each flow retries and succeeds.
test("inbound-request, outbound-request and request1: the reference's early-Hello 'listeners' answer is retried, bytes flow", async () => {
  const NOT_READY = 2;
  await using(async (ref) => {
    const p = await producer(2, 26);
    try {
      const r = await inboundRequest(ref.address, p.addresses.map(formatAddress), { numConn: 2 }, opts());
      assert.ok(ref.calls.hello >= NOT_READY + 1, `hellos: ${ref.calls.hello}`);
      assert.equal(await verified(r.listeners, 26), 2 * BYTES);
      await releaseStream(r.uid, [ref.address], opts());
    } finally {
      await p.close();
    }
  }, { helloBeforeListeners: NOT_READY });
  await using(async (ref) => {
    const p = await producer(2, 27);
    try {
      const r = await outboundRequest(ref.address, p.addresses.map(formatAddress), { numConn: 2 }, opts());
      assert.ok(ref.calls.hello >= NOT_READY + 1, `hellos: ${ref.calls.hello}`);
      assert.equal(await verified(r.listeners, 27), 2 * BYTES);
      await releaseStream(r.uid, [ref.address], opts());
    } finally {
      await p.close();
    }
  }, { helloBeforeListeners: NOT_READY });
  await using(async (ref) => {
    const p = await producer(2, 28);
    try {
      const uid = 'ref-request1-not-ready';
      const [r] = await Promise.all([
        request1(ref.address, { numConn: 2, uid }, opts()),
        sendHello(ref.address, uid, 'PROD', p.addresses.map(formatAddress), { insecure: true, deadlineMs: 10_000 }),
      ]);
      assert.ok(ref.calls.hello >= NOT_READY + 1, `hellos: ${ref.calls.hello}`);
      assert.equal(await verified(r.listeners, 28), 2 * BYTES);
      await releaseStream(uid, [ref.address], opts());
    } finally {
      await p.close();
    }
  }, { helloBeforeListeners: NOT_READY });
});

test("a Hello still answered 'listeners' when the timeout ends: the flow fails with that answer and releases", async () => {
  await using(async (ref) => {
    const p = await producer(1, 29);
    try {
      await assert.rejects(inboundRequest(ref.address, p.addresses.map(formatAddress), { numConn: 1 }, opts({ deadlineMs: 1500 })), (err: Error) => {
        assert.match(err.message, /refused hello: UNKNOWN: Exception calling application: 'listeners'/);
        return true;
      });
      assert.equal(ref.streams(), 0);
    } finally {
      await p.close();
    }
  }, { helloBeforeListeners: 1_000_000 });
});

const PLAIN_NOTICE = /s2uc: warning: stream \S+ is not encrypted by SciStream: 127\.0\.0\.1:\d+ answers like the Python reference's s2cs/;

test('s2uc CLI inbound-request, outbound-request and request1 through a reference-like gateway: a notice on stderr, "wan": "plain" in --json', async () => {
  await using(async (ref) => {
    const p = await producer(2, 30);
    try {
      const targets = p.addresses.map(formatAddress).join(',');
      const runs = [
        await s2uc(['inbound-request', '--s2cs', ref.address, '--targets', targets, '--num-conn', '2', '--json']),
        await s2uc(['outbound-request', '--s2cs', ref.address, '--remote-listeners', targets, '--num-conn', '2', '--json']),
        (await Promise.all([
          s2uc(['request1', '--s2cs', ref.address, '--uid', 'ref-cli-request1', '--num-conn', '2', '--json']),
          sendHello(ref.address, 'ref-cli-request1', 'PROD', p.addresses.map(formatAddress), { insecure: true, deadlineMs: 10_000 }),
        ]))[0],
      ];
      for (const r of runs) {
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, PLAIN_NOTICE);
        const result = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { uid: string; wan: string };
        assert.equal(result.wan, 'plain');
        await releaseStream(result.uid, [ref.address], opts());
      }
      assert.equal(ref.streams(), 0);
    } finally {
      await p.close();
    }
  });
});

test('s2uc CLI request with --allow-plaintext-data and a reference-like gateway: the WAN leg is said not encrypted by SciStream, naming the reference gateway, and no more', async () => {
  await using(async (ref) => {
    const ours = await startGateway();
    const p = await producer(2, 31);
    try {
      const uid = 'ref-cli-request-wan';
      const [r] = await Promise.all([
        s2uc(['--allow-plaintext-data', 'request', '--prod-s2cs', ref.address, '--cons-s2cs', ours.address, '--uid', uid, '--num-conn', '2']),
        sendHello(ref.address, uid, 'PROD', p.addresses.map(formatAddress), { insecure: true, deadlineMs: 10_000 }),
      ]);
      assert.equal(r.code, 0, r.stderr);
      const wan = r.stdout.split('\n').filter((l) => l.startsWith('WAN leg:'));
      assert.equal(wan.length, 1, r.stdout);
      assert.match(wan[0]!, new RegExp(`^WAN leg: not encrypted by SciStream \\(--allow-plaintext-data; ${ref.address} is a reference gateway: its own data server decides`));
      assert.doesNotMatch(r.stdout, /plain TCP/);
      const json = await Promise.all([
        s2uc(['--allow-plaintext-data', 'request', '--prod-s2cs', ref.address, '--cons-s2cs', ours.address, '--uid', `${uid}-json`, '--num-conn', '1', '--json']),
        sendHello(ref.address, `${uid}-json`, 'PROD', [formatAddress(p.addresses[0]!)], { insecure: true, deadlineMs: 10_000 }),
      ]);
      assert.equal(json[0].code, 0, json[0].stderr);
      const map = JSON.parse(json[0].stdout.trim().split('\n').at(-1)!) as { wan: string; referenceGateways: string[] };
      assert.equal(map.wan, 'plain');
      assert.deepEqual(map.referenceGateways, [ref.address]);
      for (const u of [uid, `${uid}-json`]) {
        const rel = await s2uc(['release', u]);
        assert.equal(rel.code, 0, rel.stderr);
      }
      assert.equal(ref.streams(), 0);
      assert.equal((await ours.client.status({ uid: '' })).streams.length, 0);
    } finally {
      await p.close();
      await ours.close();
    }
  });
});
