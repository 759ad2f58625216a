// The application controller's Hello before the stream is requested: retried until
// the request exists (bounded by its deadline), against ours and against a gateway
// that answers as the reference does (`entry not found`, as UNKNOWN).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { sendHello } from '../../src/app/controller.js';
import { RemoteError } from '../../src/protocol/client.js';
import { Control, type ControlHandlers } from '../../src/protocol/contract.js';
import { startGateway } from '../support/gateway.js';

/** A stand-in gateway whose hello answers like the reference's until `requested()` is called. */
async function referenceLikeGateway(): Promise<{ address: string; hellos: () => number; requested: () => void; close: () => void }> {
  let known = false;
  let hellos = 0;
  const server = new grpc.Server();
  const unimplemented = (_call: unknown, cb: grpc.sendUnaryData<never>) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'not in this stand-in' });
  const handlers: ControlHandlers = {
    req: unimplemented,
    update: unimplemented,
    release: unimplemented,
    status: unimplemented,
    capabilities: unimplemented,
    hello: (call, cb) => {
      hellos++;
      if (!known) cb({ code: grpc.status.UNKNOWN, details: `Exception calling application: entry not found for ${call.request.uid}` });
      else cb(null, { message: 'Hello message sent to the scistream control server', listeners: ['127.0.0.1:5100'] });
    },
  };
  server.addService(Control.service, handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { address: `127.0.0.1:${port}`, hellos: () => hellos, requested: () => (known = true), close: () => server.forceShutdown() };
}

test('a Hello sent before the request is retried until the request exists (reference-like gateway)', async () => {
  const gw = await referenceLikeGateway();
  try {
    setTimeout(() => gw.requested(), 1200);
    const r = await sendHello(gw.address, 'early-1', 'CONS', [], { insecure: true, deadlineMs: 10_000 });
    assert.deepEqual(r.listeners, ['127.0.0.1:5100']);
    assert.ok(gw.hellos() >= 2, `sent ${gw.hellos()} Hellos`);
  } finally {
    gw.close();
  }
});

test('the retries end at the deadline with the gateway\'s answer', async () => {
  const gw = await referenceLikeGateway();
  try {
    await assert.rejects(sendHello(gw.address, 'never-1', 'PROD', ['127.0.0.1:7000'], { insecure: true, deadlineMs: 1500 }), (err: unknown) => {
      assert.ok(err instanceof RemoteError);
      assert.match(err.details, /entry not found/);
      return true;
    });
  } finally {
    gw.close();
  }
});

test('ours: a consumer Hello for a uid not requested yet is answered after 10 s, not after the Hello timeout', async () => {
  const gw = await startGateway({ helloTimeoutMs: 120_000 });
  try {
    // The call's own deadline (30 s) is far below the Hello timeout: only the gateway's
    // short consumer wait can produce this answer.
    await assert.rejects(gw.client.hello({ uid: 'early-cons', role: 'CONS', prod_listeners: [] }, 30_000), (err: unknown) => {
      assert.ok(err instanceof RemoteError);
      assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
      assert.match(err.details, /no request for uid early-cons arrived within 10 s/);
      return true;
    });
  } finally {
    await gw.close();
  }
});
