// The record s2cs keeps with each stream on its agents: it reads back what it
// wrote, holds no secret, and refuses what it did not write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeRecord, encodeRecord, MAX_RECORD_BYTES, type PersistedStream } from '../../src/s2cs/records.js';
import { generateAppSecret, hashAppSecret, verifyAppSecretHash } from '../../src/auth/app-secret.js';

const secret = generateAppSecret();
const controlSecret = generateAppSecret();
const stream: PersistedStream = {
  request: { uid: 'rec-1', role: 'PROD', numConn: 2, rate: 10 },
  owner: { subject: 'alice', username: 'Alice' },
  appSecretHash: hashAppSecret(secret),
  binding: { secretHash: hashAppSecret(controlSecret), source: '10.0.0.9', bySecret: true },
  state: 'ready',
  listeners: [{ host: '10.0.0.1', port: 5100 }, { host: '::1', port: 5101 }],
  prodListeners: [{ host: '127.0.0.1', port: 7000 }],
  targets: [{ host: '127.0.0.1', port: 7000 }],
  wanIdentity: 'AB:CD',
  quotaKey: 'user alice',
  createdAt: 1_700_000_000_000,
  leaseEnds: 1_700_000_300_000,
};

test('a record reads back as written, and the secret is checked against its hash only', () => {
  const bytes = encodeRecord(stream);
  assert.ok(!Buffer.from(bytes).toString().includes(secret), 'the secret itself is not in the record');
  assert.ok(!Buffer.from(bytes).toString().includes(controlSecret), 'nor the control secret');
  const back = decodeRecord(bytes, 'rec-1');
  assert.deepEqual(back, stream);
  assert.ok(verifyAppSecretHash(secret, back.appSecretHash));
  assert.ok(!verifyAppSecretHash(`${secret}x`, back.appSecretHash));
  assert.ok(!verifyAppSecretHash('', back.appSecretHash));
  assert.ok(!verifyAppSecretHash(secret, ''));
});

test('before Hello and UpdateTargets: absent lists stay absent', () => {
  const early: PersistedStream = { ...stream, state: 'awaiting-hello', prodListeners: undefined, targets: undefined, wanIdentity: undefined, appSecretHash: '' };
  assert.deepEqual(decodeRecord(encodeRecord(early), 'rec-1'), early);
});

test('records that are not ours are refused with the reason', () => {
  const good = JSON.parse(Buffer.from(encodeRecord(stream)).toString()) as Record<string, unknown>;
  const bad = (o: Record<string, unknown>) => Buffer.from(JSON.stringify({ ...good, ...o }));
  const cases: [Uint8Array, string, RegExp][] = [
    [new Uint8Array(), 'rec-1', /no record/],
    [Buffer.from('{nope'), 'rec-1', /not JSON/],
    [Buffer.from('[]'), 'rec-1', /version/],
    [bad({ v: 2 }), 'rec-1', /version 2/],
    [encodeRecord(stream), 'rec-2', /belongs to uid rec-1/],
    [bad({ role: 'BOTH' }), 'rec-1', /role/],
    [bad({ state: 'gone' }), 'rec-1', /state/],
    [bad({ owner: {} }), 'rec-1', /owner/],
    [bad({ numConn: 3 }), 'rec-1', /2 listeners for num_conn 3/],
    [bad({ numConn: 1.5 }), 'rec-1', /numConn/],
    [bad({ listeners: '10.0.0.1' }), 'rec-1', /host:port/],
    [bad({ appSecretHash: 'abc' }), 'rec-1', /hash/],
    [bad({ uid: '\u0000' }), '\u0000', /uid/],
    [Buffer.alloc(MAX_RECORD_BYTES + 1, 0x20), 'rec-1', /over/],
  ];
  for (const [bytes, uid, re] of cases) assert.throws(() => decodeRecord(bytes, uid), re);
});

test('the binding reads back; a record from an s2cs that did not bind streams reads as unbound; a bad binding is refused', () => {
  const good = JSON.parse(Buffer.from(encodeRecord(stream)).toString()) as Record<string, unknown>;
  const { controlSecretHash: _h, requester: _r, bindsBySecret: _b, ...legacy } = good;
  assert.deepEqual(decodeRecord(Buffer.from(JSON.stringify(legacy)), 'rec-1').binding, { secretHash: '', source: '', bySecret: false });
  for (const [change, why] of [
    [{ controlSecretHash: 'zz' }, /malformed control secret hash/],
    [{ bindsBySecret: 'yes' }, /bindsBySecret is not true or false/],
    [{ bindsBySecret: true, controlSecretHash: '' }, /holds no hash/],
    [{ requester: 5 }, /no text requester/],
  ] as const) {
    assert.throws(() => decodeRecord(Buffer.from(JSON.stringify({ ...good, ...change })), 'rec-1'), why);
  }
});

test('a stream lifetime (Request.lifetime_s) is kept, so that a restarted s2cs still ends the stream on time', () => {
  const timed: PersistedStream = { ...stream, request: { ...stream.request, lifetimeS: 7200 } };
  assert.deepEqual(decodeRecord(encodeRecord(timed), 'rec-1'), timed);
  const good = JSON.parse(Buffer.from(encodeRecord(timed)).toString()) as Record<string, unknown>;
  assert.throws(() => decodeRecord(Buffer.from(JSON.stringify({ ...good, lifetimeS: -1 })), 'rec-1'), /lifetimeS is not a whole number/);
});

test('a stream with an allow-list and chosen ports keeps them (a retry after a restart must repeat them); malformed ones are refused', () => {
  const placed: PersistedStream = { ...stream, request: { ...stream.request, allowFrom: ['10.0.0.0/8', '2001:db8::/32'], listenerPorts: [5101, 5100] } };
  assert.deepEqual(decodeRecord(encodeRecord(placed), 'rec-1'), placed);
  const json = JSON.parse(Buffer.from(encodeRecord(placed)).toString()) as Record<string, unknown>;
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ ...json, allowFrom: 'all' }, /allowFrom is not a list/],
    [{ ...json, allowFrom: ['bogus'] }, /record allowFrom\[0\]: "bogus" is not a valid CIDR block/],
    [{ ...json, listenerPorts: [5100] }, /listener_ports names 1 port\(s\) but num_conn is 2/],
    [{ ...json, listenerPorts: ['5100', 5101] }, /listenerPorts is not a list of ports/],
  ];
  for (const [record, re] of bad) assert.throws(() => decodeRecord(Buffer.from(JSON.stringify(record)), 'rec-1'), re);
});
