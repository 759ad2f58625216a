// s2uc's allow-list and chosen-port options against a gateway like the Python
// reference's s2cs, which would ignore both fields: refused before anything is
// reserved, instead of leaving listeners open to anyone or on other ports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { outboundRequest, requestStream } from '../../src/s2uc/flows.js';
import { ScistreamError } from '../../src/protocol/errors.js';
import { startReferenceGateway } from '../support/reference-gateway.js';
import { startGateway } from '../support/gateway.js';

const refused = (err: unknown): boolean => {
  assert.ok(err instanceof ScistreamError, String(err));
  assert.equal(err.kind, 'FAILED_PRECONDITION');
  assert.match(err.message, /answers like the Python reference's s2cs, which ignores allow-lists and chosen listener ports: nothing was reserved/);
  return true;
};

test('--allow-from or --listener-ports towards a reference gateway: refused, nothing reserved', async () => {
  const ref = await startReferenceGateway({ helloTimeoutMs: 5_000 });
  const ours = await startGateway();
  try {
    const opts = { insecure: true, deadlineMs: 10_000, allowPlaintextData: true };
    await assert.rejects(outboundRequest(ref.address, ['127.0.0.1:9'], { numConn: 1, allowFrom: ['10.0.0.0/8'] }, opts), refused);
    await assert.rejects(outboundRequest(ref.address, ['127.0.0.1:9'], { numConn: 1, listenerPorts: [5100] }, opts), refused);
    // Two gateways, one of them the reference's: the WAN options too.
    await assert.rejects(requestStream(ref.address, ours.address, { numConn: 1, wanAllowFrom: ['192.0.2.1/32'] }, opts), refused);
    assert.equal(ref.calls.req, 0, 'no req reached the reference gateway');
    assert.equal(ours.server.dataServer.ports().reserved, 0, 'nor was anything reserved on ours');
  } finally {
    await ref.close();
    await ours.close();
  }
});
