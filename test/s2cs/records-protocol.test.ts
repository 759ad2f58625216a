// A UDP stream's record keeps its protocol, so that a restarted s2cs takes it back as UDP;
// a TCP stream's record has none (as before), and a bad value is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeRecord, encodeRecord, type PersistedStream } from '../../src/s2cs/records.js';

const stream: PersistedStream = {
  request: { uid: 'rec-udp', role: 'CONS', numConn: 1, rate: 0, protocol: 'udp' },
  owner: { subject: 'alice' },
  appSecretHash: '',
  binding: { secretHash: '', source: '127.0.0.1', bySecret: false },
  state: 'ready',
  listeners: [{ host: '10.0.0.1', port: 5100 }],
  prodListeners: undefined,
  targets: [{ host: '10.0.0.2', port: 5200 }],
  wanIdentity: undefined,
  quotaKey: 'user alice',
  createdAt: 1_700_000_000_000,
  leaseEnds: 1_700_000_300_000,
};

test('a UDP stream\'s record reads back as UDP; a TCP stream\'s record names no protocol', () => {
  assert.deepEqual(decodeRecord(encodeRecord(stream), 'rec-udp'), stream);
  const tcp: PersistedStream = { ...stream, request: { uid: 'rec-udp', role: 'CONS', numConn: 1, rate: 0 } };
  const bytes = encodeRecord(tcp);
  assert.ok(!Buffer.from(bytes).toString().includes('protocol'));
  assert.deepEqual(decodeRecord(bytes, 'rec-udp'), tcp);
});

test('a record with another protocol is refused, naming it', () => {
  const json = JSON.parse(Buffer.from(encodeRecord(stream)).toString()) as Record<string, unknown>;
  json.protocol = 'sctp';
  assert.throws(() => decodeRecord(Buffer.from(JSON.stringify(json)), 'rec-udp'), /record protocol/);
});
