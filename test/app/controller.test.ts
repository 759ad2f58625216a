// The application controller's Hello before the stream is requested: retried until
// the request exists (bounded by its deadline), against ours and against a gateway
// that answers as the reference does (`entry not found`, as UNKNOWN).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { sendHello } from '../../src/app/controller.js';
import { ControlConnection, RemoteError } from '../../src/protocol/client.js';
import { startReferenceGateway } from '../support/reference-gateway.js';
import { startGateway } from '../support/gateway.js';

test('a Hello sent before the request is retried until the request exists (reference-like gateway)', async () => {
  const gw = await startReferenceGateway({ helloTimeoutMs: 10_000 });
  const user = new ControlConnection(gw.address, { insecure: true, deadlineMs: 10_000 });
  try {
    const req = new Promise<unknown>((resolve, reject) => setTimeout(() => user.req({ uid: 'early-1', role: 'CONS', num_conn: 1, rate: 0 }).then(resolve, reject), 1200));
    const r = await sendHello(gw.address, 'early-1', 'CONS', [], { insecure: true, deadlineMs: 10_000 });
    assert.equal(r.listeners.length, 1);
    assert.ok(gw.calls.hello >= 2, `sent ${gw.calls.hello} Hellos`);
    await req;
  } finally {
    user.close();
    await gw.close();
  }
});

test('the retries end at the deadline with the gateway\'s answer', async () => {
  const gw = await startReferenceGateway();
  try {
    await assert.rejects(sendHello(gw.address, 'never-1', 'PROD', ['127.0.0.1:7000'], { insecure: true, deadlineMs: 1500 }), (err: unknown) => {
      assert.ok(err instanceof RemoteError);
      assert.match(err.details, /entry not found/);
      return true;
    });
  } finally {
    await gw.close();
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
