// placedRequest: what the configuration file's standing tunnels hand StreamTable.req,
// checked and canonical as a req from the wire; the table grants the ports and list.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { placedRequest } from '../../../src/s2cs/streams/index.js';
import { freePortRange } from '../../../src/demo/procs.js';
import { startGateway } from '../../support/gateway.js';

test('placedRequest: canonical fields, errors naming the field and the caller', async () => {
  assert.deepEqual(placedRequest({ uid: 'tunnel-a', role: 'PROD', numConn: 2, allowFrom: ['10.0.0.1', '10.0.0.0/8'], listenerPorts: [5101, 5100] }), {
    uid: 'tunnel-a',
    role: 'PROD',
    numConn: 2,
    rate: 0,
    allowFrom: ['10.0.0.0/8', '10.0.0.1/32'],
    listenerPorts: [5101, 5100],
  });
  assert.deepEqual(placedRequest({ uid: 'plain', role: 'CONS', numConn: 1 }), { uid: 'plain', role: 'CONS', numConn: 1, rate: 0 });
  assert.throws(() => placedRequest({ uid: 'x', role: 'PROD', numConn: 2, listenerPorts: [5100] }, 'tunnel x: '), /^ScistreamError: tunnel x: listener_ports names 1 port\(s\) but num_conn is 2/);
  assert.throws(() => placedRequest({ uid: 'x', role: 'PROD', numConn: 1, allowFrom: ['nope'] }), /allow_from\[0\]: "nope" is not a valid CIDR block/);
});

test('StreamTable.req with a placed request: the chosen ports and the list in force', async () => {
  const range = await freePortRange(4);
  const gw = await startGateway({ portRange: range, dataAllowFrom: ['127.0.0.0/8'] });
  try {
    const owner = { subject: 'admin' };
    const r = await gw.server.table.req(placedRequest({ uid: 'standing', role: 'CONS', numConn: 1, listenerPorts: [range.first + 3] }), owner);
    assert.deepEqual(r.listeners, [`127.0.0.1:${range.first + 3}`]);
    assert.deepEqual(gw.server.table.status('standing')[0]!.allowFrom, ['127.0.0.0/8']);
  } finally {
    await gw.close();
  }
});
