// ConnectionPool: control connections reused across calls, tokens looked up per call.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionPool } from '../../src/protocol/client.js';
import { streamStatus } from '../../src/s2uc/status.js';
import { startGateway } from '../support/gateway.js';

test('a pool keeps one connection per server and identity, and asks for the token on every call', async () => {
  const gw = await startGateway();
  const pool = new ConnectionPool();
  try {
    let asked = 0;
    const user = { insecure: true, pool, tokenFor: async () => `token-${++asked}` };
    const a = await pool.get(gw.address, user);
    assert.equal(await pool.get(gw.address, user), a, 'the same connection again');
    await streamStatus(gw.address, undefined, user);
    await streamStatus(gw.address, undefined, user);
    assert.equal(asked, 2, 'a fresh token for each call on the kept connection');
    // An application controller's connection is never the user's.
    assert.notEqual(await pool.get(gw.address, { insecure: true }), a);
  } finally {
    pool.close();
    await gw.close();
  }
});
