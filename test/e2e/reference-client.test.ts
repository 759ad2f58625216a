// The reference's user client and application controller, as a stand-in that
// behaves like them on the wire (test/e2e/reference_like_client.py), against our
// s2cs run as its own process with its TLS control channel: each flow must end
// with exit code 0, none of the reference's error lines, and verified bytes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pattern } from '../../src/app/data.js';
import { startProducer, type Producer } from '../../src/app/produce.js';
import { formatAddress } from '../../src/protocol/address.js';
import { freePort, freePortRange, spawnCli, watchChild, type Proc } from '../../src/demo/procs.js';
import { canConnect, outcome } from '../support/sockets.js';
import { PYTHON, generatePythonStubs } from '../support/python.js';

const CLIENT = fileURLToPath(new URL('../../../test/e2e/reference_like_client.py', import.meta.url));
const BYTES = 1024 * 1024;
const SEED = 11;
/** The reference's error lines (and its appctrl's warning): none may appear. */
const ERROR_LINE = /Another GRPC error occurred|Error sending hello message|Error during update|Error during release|^Error:|Request [Ff]ailed|Please obtain new credentials|AppCtrl WARNING|AppCtrl: Failed/m;

let dir: string;
let s2cs: Proc;
let address: string;
let cert: string;
let producer: Producer;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'scistream-refclient-'));
  generatePythonStubs(dir);
  const port = await freePort();
  const range = await freePortRange(24);
  // TLS as the reference client expects it: the gateway's self-signed certificate
  // (made in --state-dir) is the root it trusts (--server_cert).
  // --allow-plaintext-data: the reference sends no per-stream credentials.
  s2cs = spawnCli('s2cs', [
    'start', '--control-host', '127.0.0.1', '--port', String(port), '--listener-ip', '127.0.0.1',
    '--port-range', `${range.first}-${range.last}`, '--state-dir', join(dir, 'state'), '--allow-plaintext-data', '--verbose',
  ]);
  await s2cs.waitFor(/s2cs ready/);
  address = `127.0.0.1:${port}`;
  cert = join(dir, 'state', 'tls', 'cert.pem');
  producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }, { host: '127.0.0.1', port: 0 }], bytes: BYTES, seed: SEED });
});

after(async () => {
  await producer?.close();
  if (s2cs) assert.equal(await s2cs.stop(), 0, 's2cs exits 0 on SIGTERM');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Starts the stand-in client with `args`. */
function client(args: string[]): Proc {
  const child = spawn(PYTHON, [CLIENT, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SCISTREAM_PY_STUBS: dir } });
  return watchChild(`reference-like ${args[0]}`, args.join(' '), child);
}

/** Runs it to its end (stopped after 30 s), and asserts exit code 0 and no error line. */
async function completes(args: string[]): Promise<string> {
  const p = client(args);
  const timer = setTimeout(() => void p.stop('SIGKILL'), 30_000);
  const code = await p.exited;
  clearTimeout(timer);
  assert.equal(code, 0, p.describe());
  assert.doesNotMatch(p.stdout() + p.stderr(), ERROR_LINE, p.describe());
  return p.stdout();
}

const tls = () => ['--s2cs', address, '--server_cert', cert];

/** The addresses a line such as `Listeners: ['127.0.0.1:5100', ...]` lists. */
function listed(text: string, prefix: string): string[] {
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  assert.ok(line, `a line starting with ${JSON.stringify(prefix)} in:\n${text}`);
  return [...line.matchAll(/'([^']+)'/g)].map((m) => m[1]!);
}

const WANT = (() => {
  const pattern = new Pattern(SEED);
  const h = createHash('sha256');
  for (let off = 0; off < BYTES; ) {
    const v = pattern.view(off, BYTES - off);
    h.update(v);
    off += v.length;
  }
  return h.digest('hex');
})();

/** Reads every listener to its end: each must give the producer's whole stream, cleanly ended. */
async function verifyThrough(listeners: string[]): Promise<void> {
  const got = await Promise.all(
    listeners.map((l) => {
      const [host, port] = [l.slice(0, l.lastIndexOf(':')), Number(l.slice(l.lastIndexOf(':') + 1))];
      return outcome(connect({ host, port }));
    }),
  );
  for (const [i, o] of got.entries()) assert.deepEqual(o, { bytes: BYTES, sha: WANT, end: 'end' }, `through ${listeners[i]}`);
}

async function release(uid: string): Promise<void> {
  const out = await completes(['release', ...tls(), uid]);
  assert.match(out, /^Release completed$/m);
}

test('inbound-request (defaults: 5 connections) onto a real producer: bytes through the gateway listeners', async () => {
  const ports = producer.addresses.map((a) => a.port).join(',');
  const out = await completes(['inbound-request', ...tls(), '--remote_ip', '127.0.0.1', '--receiver_ports', ports]);
  assert.match(out, /^Hello message sent successfully$/m);
  const uid = /^(\S+) 127\.0\.0\.1:\d+ INVALID_TOKEN PROD$/m.exec(out)?.[1];
  assert.ok(uid, out);
  const listeners = listed(out, 'Listeners: ');
  assert.equal(listeners.length, 5);
  try {
    await verifyThrough(listeners);
  } finally {
    await release(uid);
  }
});

test('outbound-request UID PROD_LSTN, with its Hello with role PROD to the consumer side: bytes through the outbound listeners', async () => {
  // A producer listening stands in for the other gateway's listeners.
  const uid = randomUUID();
  const remote = producer.addresses.map(formatAddress).join(',');
  const from = s2cs.stderr().length;
  try {
    const out = await completes(['outbound-request', ...tls(), '--num_conn', '3', uid, remote]);
    assert.match(out, /^Hello message sent successfully$/m);
    const listeners = listed(out, 'Listeners: ');
    assert.equal(listeners.length, 3);
    await s2cs.waitFor(/Hello with role PROD for a stream requested as CONS: taken as its consumer Hello/, { from, stream: 'stderr', timeoutMs: 5000 });
    await verifyThrough(listeners);
  } finally {
    await release(uid);
  }
});

test('prod-req with the reference controller sending its Hello with INVALID_TOKEN: bytes through', async () => {
  const req = client(['prod-req', ...tls(), '--num_conn', '2']);
  let uid: string | undefined;
  try {
    uid = (await req.waitFor(/^(\S+) 127\.0\.0\.1:\d+ INVALID_TOKEN PROD$/m, { timeoutMs: 15_000 }))[1]!;
    const ctrl = await completes(['appctrl', '--server_cert', cert, uid, address, 'INVALID_TOKEN', 'PROD', '--listeners', producer.addresses.map(formatAddress).join(',')]);
    assert.match(ctrl, /^AppCtrl: Hello sent$/m);
    const timer = setTimeout(() => void req.stop('SIGKILL'), 15_000);
    const code = await req.exited;
    clearTimeout(timer);
    assert.equal(code, 0, req.describe());
    assert.doesNotMatch(req.stdout() + req.stderr(), ERROR_LINE, req.describe());
    const listeners = [...req.stdout().trim().split('\n').at(-1)!.matchAll(/'([^']+)'/g)].map((m) => m[1]!);
    assert.equal(listeners.length, 2, req.describe());
    await verifyThrough(listeners);
  } finally {
    await req.stop('SIGKILL');
    if (uid) await release(uid);
  }
});

test('release twice: both "Release completed", and the listeners are closed', async () => {
  const out = await completes(['inbound-request', ...tls(), '--num_conn', '2', '--remote_ip', '127.0.0.1', '--receiver_ports', String(producer.addresses[0]!.port)]);
  const uid = /^(\S+) 127\.0\.0\.1:\d+ INVALID_TOKEN PROD$/m.exec(out)![1]!;
  const listeners = listed(out, 'Listeners: ');
  assert.ok(await canConnect(listeners[0]!));
  await release(uid);
  await release(uid);
  for (const l of listeners) assert.equal(await canConnect(l), false, `${l} closed after release`);
});

test('the reference controller gives up after 5 tries (exit 1) when its Hello is refused', async () => {
  // A CONS Hello on a PROD stream is refused (the reference would break there too); each try is answered, so the 5 tries are quick.
  const req = client(['prod-req', ...tls(), '--num_conn', '1']);
  let uid: string | undefined;
  try {
    uid = (await req.waitFor(/^(\S+) 127\.0\.0\.1:\d+ INVALID_TOKEN PROD$/m, { timeoutMs: 15_000 }))[1]!;
    await new Promise((r) => setTimeout(r, 300));
    const ctrl = client(['appctrl', '--server_cert', cert, uid, address, 'INVALID_TOKEN', 'CONS']);
    const timer = setTimeout(() => void ctrl.stop('SIGKILL'), 30_000);
    const code = await ctrl.exited;
    clearTimeout(timer);
    assert.equal(code, 1, ctrl.describe());
    assert.equal(ctrl.stdout().match(/AppCtrl WARNING: GRPC error occurred: Hello with role CONS does not match/g)?.length, 5, ctrl.describe());
    assert.match(ctrl.stderr(), /AppCtrl: Failed after 5 attempts/);
  } finally {
    await req.stop('SIGKILL');
    if (uid) await release(uid);
  }
});
