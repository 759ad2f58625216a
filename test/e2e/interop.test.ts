// A client generated from proto/scistream.proto by another gRPC implementation
// (Python grpcio with protoc's stubs) drives s2cs and streams through it.
// CI installs python3-grpcio, protobuf-compiler and protobuf-compiler-grpc (.ci/run).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pattern } from '../../src/app/data.js';
import { startProducer, type Producer } from '../../src/app/produce.js';
import { formatAddress } from '../../src/protocol/address.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { PYTHON, generatePythonStubs } from '../support/python.js';

const CLIENT = fileURLToPath(new URL('../../../test/e2e/reference_client.py', import.meta.url));
const BYTES = 4 * 1024 * 1024;

let gen: string;
let prod: TestGateway;
let cons: TestGateway;
let producer: Producer;

before(async () => {
  gen = mkdtempSync(join(tmpdir(), 'scistream-py-'));
  generatePythonStubs(gen);
  [prod, cons] = await Promise.all([startGateway(), startGateway()]);
  producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }, { host: '127.0.0.1', port: 0 }], bytes: BYTES, seed: 5 });
});

after(async () => {
  await producer?.close();
  await Promise.all([prod?.close(), cons?.close()]);
  if (gen) rmSync(gen, { recursive: true, force: true });
});

function expectedDigest(): string {
  const pattern = new Pattern(5);
  const h = createHash('sha256');
  for (let off = 0; off < BYTES; ) {
    const v = pattern.view(off, BYTES - off);
    h.update(v);
    off += v.length;
  }
  return h.digest('hex');
}

for (const order of ['hello-first', 'req-first'] as const) {
  test(`Python grpcio client, ${order}: req, hello, update, release and a verified stream`, async () => {
    // Asynchronous: the servers under test run in this process.
    const r = await promisify(execFile)(
      PYTHON,
      [CLIENT, gen, prod.address, cons.address, producer.addresses.map(formatAddress).join(','), '3', order],
      { encoding: 'utf8', timeout: 60_000 },
    ).catch((err: { stderr?: string; message: string }) => assert.fail(`python client failed: ${err.stderr ?? err.message}`));
    const out = JSON.parse(r.stdout) as { invalid: string; digests: string[]; sizes: number[] };
    assert.equal(out.invalid, 'INVALID_ARGUMENT');
    assert.deepEqual(out.sizes, [BYTES, BYTES, BYTES]);
    const want = expectedDigest();
    assert.deepEqual(out.digests, [want, want, want]);
    assert.equal(prod.server.dataServer.ports().reserved, 0);
    assert.equal(cons.server.dataServer.ports().reserved, 0);
  });
}
