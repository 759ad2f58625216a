import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  validateRequest,
  validateUpdate,
  validateHello,
  validateRelease,
  validateUid,
  validateRole,
  sameAddresses,
  MAX_ADDRESSES,
  type Limits,
} from '../../src/protocol/validate.js';
import { ScistreamError } from '../../src/protocol/errors.js';
import type { Request__Output } from '../../src/protocol/generated/scistream/Request.js';
import type { UpdateTargets__Output } from '../../src/protocol/generated/scistream/UpdateTargets.js';
import type { Hello__Output } from '../../src/protocol/generated/scistream/Hello.js';
import type { Release__Output } from '../../src/protocol/generated/scistream/Release.js';

const LIMITS: Limits = { maxConn: 8 };
const UUID = '82f0e9b8-eb7d-11ed-be3c-f303ca66dd31';

/** Asserts that `fn` throws an INVALID_ARGUMENT ScistreamError whose message names `field`. */
function assertInvalid(fn: () => unknown, field: string): ScistreamError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `expected an error naming ${field}, got none`);
  assert.ok(caught instanceof ScistreamError, `expected ScistreamError, got ${String(caught)}`);
  assert.equal(caught.kind, 'INVALID_ARGUMENT');
  assert.ok(caught.message.includes(field), `message ${JSON.stringify(caught.message)} should name ${field}`);
  return caught;
}

const request = (over: Partial<Request__Output> = {}): Request__Output => ({
  uid: UUID,
  role: 'PROD',
  num_conn: 2,
  rate: 0,
  lifetime_s: 0,
  allow_from: [],
  listener_ports: [],
  protocol: '',
  ...over,
});
const update = (over: Partial<UpdateTargets__Output> = {}): UpdateTargets__Output => ({
  uid: UUID,
  remote_listeners: ['127.0.0.1:7000', '[::1]:7001'],
  role: 'CONS',
  credentials: null,
  control_secret: '',
  ...over,
});
const hello = (over: Partial<Hello__Output> = {}): Hello__Output => ({
  uid: UUID,
  prod_listeners: ['127.0.0.1:7000'],
  role: 'PROD',
  app_secret: '',
  ...over,
});
const release = (over: Partial<Release__Output> = {}): Release__Output => ({ uid: UUID, control_secret: '', ...over });

const BAD_UIDS: Array<[string, string]> = [
  ['', 'empty'],
  ['a'.repeat(129), '129 characters'],
  ['a'.repeat(10_000), '10000 characters'],
  ['has space', 'a space'],
  [' leading', 'a leading space'],
  ['trailing\n', 'a trailing newline'],
  ['a/b', 'a slash'],
  ['../etc', 'a path'],
  ['stream:1', 'a colon'],
  ['naïve', 'a non-ASCII letter'],
  ['流', 'CJK'],
  ['emoji😀', 'an emoji'],
  ['a\u0000b', 'a NUL'],
];

const GOOD_UIDS: Array<[string, string]> = [
  ['a'.repeat(128), '128 characters'],
  ['x', 'one character'],
  [UUID, 'a UUID'],
  ['Stream_1.part-2', 'all allowed punctuation'],
  ['...', 'only dots'],
];

describe('validateUid', () => {
  for (const [uid, why] of BAD_UIDS) {
    it(`rejects a uid with ${why}`, () => {
      const err = assertInvalid(() => validateUid(uid), 'uid');
      assert.ok(err.message.length < 300, 'long uids are shortened in the message');
    });
  }
  for (const [uid, why] of GOOD_UIDS) {
    it(`accepts a uid of ${why}`, () => {
      assert.equal(validateUid(uid), uid);
    });
  }
  it('uses the given field name', () => {
    assertInvalid(() => validateUid('', 'stream_uid'), 'stream_uid');
    assertInvalid(() => validateUid('a b', 'stream_uid'), 'stream_uid');
  });
});

describe('validateRole', () => {
  it('accepts PROD and CONS', () => {
    assert.equal(validateRole('PROD'), 'PROD');
    assert.equal(validateRole('CONS'), 'CONS');
  });
  for (const role of ['prod', 'cons', 'Prod', 'PRODUCER', ' PROD', 'PROD ', 'X', '', 'x'.repeat(1000)]) {
    it(`rejects ${JSON.stringify(role.length > 20 ? `${role.slice(0, 10)}...` : role)}`, () => {
      const err = assertInvalid(() => validateRole(role), 'role');
      assert.ok(err.message.length < 300, 'long roles are shortened in the message');
    });
  }
});

describe('validateRequest', () => {
  it('accepts a good request', () => {
    assert.deepEqual(validateRequest(request(), LIMITS), { uid: UUID, role: 'PROD', numConn: 2, rate: 0 });
    assert.deepEqual(validateRequest(request({ role: 'CONS', num_conn: 1, rate: 1000 }), LIMITS), {
      uid: UUID,
      role: 'CONS',
      numConn: 1,
      rate: 1000,
    });
  });

  it('accepts num_conn equal to maxConn and a 128-char uid', () => {
    const uid = 'u'.repeat(128);
    assert.deepEqual(validateRequest(request({ uid, num_conn: LIMITS.maxConn }), LIMITS), {
      uid,
      role: 'PROD',
      numConn: LIMITS.maxConn,
      rate: 0,
    });
  });

  for (const [uid, why] of BAD_UIDS) {
    it(`rejects a uid with ${why}`, () => {
      assertInvalid(() => validateRequest(request({ uid }), LIMITS), 'uid');
    });
  }

  for (const role of ['', 'prod', 'cons', 'BOTH']) {
    it(`rejects role ${JSON.stringify(role)}`, () => {
      assertInvalid(() => validateRequest(request({ role }), LIMITS), 'role');
    });
  }

  for (const n of [0, -1, LIMITS.maxConn + 1, 1.5, Number.NaN, 2 ** 31 - 1]) {
    it(`rejects num_conn ${n}`, () => {
      const err = assertInvalid(() => validateRequest(request({ num_conn: n }), LIMITS), 'num_conn');
      if (n === LIMITS.maxConn + 1) assert.ok(err.message.includes(String(LIMITS.maxConn)), 'message gives the limit');
    });
  }

  for (const rate of [-1, -1000, 0.5, Number.NaN]) {
    it(`rejects rate ${rate}`, () => {
      assertInvalid(() => validateRequest(request({ rate }), LIMITS), 'rate');
    });
  }
});

describe('validateUpdate', () => {
  it('accepts a good update', () => {
    assert.deepEqual(validateUpdate(update()), {
      uid: UUID,
      role: 'CONS',
      targets: [
        { host: '127.0.0.1', port: 7000 },
        { host: '::1', port: 7001 },
      ],
      credentials: undefined,
    });
  });

  it('leaves role undefined when it is empty', () => {
    const u = validateUpdate(update({ role: '' }));
    assert.equal(u.role, undefined);
    assert.ok('role' in u);
  });

  it('accepts PROD', () => {
    assert.equal(validateUpdate(update({ role: 'PROD' })).role, 'PROD');
  });

  for (const [uid, why] of BAD_UIDS) {
    it(`rejects a uid with ${why}`, () => {
      assertInvalid(() => validateUpdate(update({ uid })), 'uid');
    });
  }

  for (const role of ['prod', 'cons', 'X', ' ']) {
    it(`rejects role ${JSON.stringify(role)}`, () => {
      assertInvalid(() => validateUpdate(update({ role })), 'role');
    });
  }

  it('rejects empty remote_listeners', () => {
    assertInvalid(() => validateUpdate(update({ remote_listeners: [] })), 'remote_listeners');
  });

  for (const bad of ['127.0.0.1', '127.0.0.1:0', '127.0.0.1:65536', 'abc', '', 'host:port', '1:2:3:5000']) {
    it(`rejects ${JSON.stringify(bad)} in remote_listeners, naming its index`, () => {
      assertInvalid(() => validateUpdate(update({ remote_listeners: ['127.0.0.1:7000', bad] })), 'remote_listeners[1]');
      assertInvalid(() => validateUpdate(update({ remote_listeners: [bad] })), 'remote_listeners[0]');
    });
  }

  it(`rejects more than ${MAX_ADDRESSES} addresses`, () => {
    const many = Array.from({ length: MAX_ADDRESSES + 1 }, (_, i) => `127.0.0.1:${1 + (i % 65535)}`);
    assertInvalid(() => validateUpdate(update({ remote_listeners: many })), 'remote_listeners');
  });

  it(`accepts exactly ${MAX_ADDRESSES} addresses`, () => {
    const many = Array.from({ length: MAX_ADDRESSES }, (_, i) => `127.0.0.1:${1 + i}`);
    assert.equal(validateUpdate(update({ remote_listeners: many })).targets.length, MAX_ADDRESSES);
  });
});

describe('validateHello', () => {
  it('accepts a good PROD hello', () => {
    assert.deepEqual(validateHello(hello()), {
      uid: UUID,
      role: 'PROD',
      prodListeners: [{ host: '127.0.0.1', port: 7000 }],
      appSecret: '',
    });
  });

  it('passes the application secret on, and refuses an oversized one', () => {
    assert.equal(validateHello(hello({ app_secret: 's3cret' })).appSecret, 's3cret');
    assertInvalid(() => validateHello(hello({ app_secret: 'x'.repeat(257) })), 'app_secret');
  });

  it('defaults an empty role to PROD', () => {
    assert.equal(validateHello(hello({ role: '' })).role, 'PROD');
  });

  it('accepts a CONS hello without prod_listeners', () => {
    assert.deepEqual(validateHello(hello({ role: 'CONS', prod_listeners: [] })), { uid: UUID, role: 'CONS', prodListeners: [], appSecret: '' });
  });

  it('rejects a PROD hello (explicit or defaulted) without prod_listeners', () => {
    assertInvalid(() => validateHello(hello({ prod_listeners: [] })), 'prod_listeners');
    assertInvalid(() => validateHello(hello({ role: '', prod_listeners: [] })), 'prod_listeners');
  });

  for (const [uid, why] of BAD_UIDS) {
    it(`rejects a uid with ${why}`, () => {
      assertInvalid(() => validateHello(hello({ uid })), 'uid');
    });
  }

  for (const role of ['prod', 'cons', 'X']) {
    it(`rejects role ${JSON.stringify(role)}`, () => {
      assertInvalid(() => validateHello(hello({ role })), 'role');
    });
  }

  for (const bad of ['127.0.0.1', '127.0.0.1:0', '127.0.0.1:65536', '[::1]5000', '[notv6]:80', 'h:8o']) {
    it(`rejects ${JSON.stringify(bad)} in prod_listeners, naming its index`, () => {
      assertInvalid(() => validateHello(hello({ prod_listeners: ['127.0.0.1:7000', bad] })), 'prod_listeners[1]');
    });
  }

  it('checks prod_listeners of a CONS hello too', () => {
    assertInvalid(() => validateHello(hello({ role: 'CONS', prod_listeners: ['nope'] })), 'prod_listeners[0]');
  });
});

describe('validateRelease', () => {
  it('returns the uid', () => {
    assert.equal(validateRelease(release()), UUID);
    assert.equal(validateRelease(release({ uid: 'r'.repeat(128) })), 'r'.repeat(128));
  });

  for (const [uid, why] of BAD_UIDS) {
    it(`rejects a uid with ${why}`, () => {
      assertInvalid(() => validateRelease(release({ uid })), 'uid');
    });
  }
});

describe('sameAddresses', () => {
  it('compares lists in order', () => {
    const a = [
      { host: '127.0.0.1', port: 1 },
      { host: '::1', port: 2 },
    ];
    assert.equal(sameAddresses(a, [...a]), true);
    assert.equal(sameAddresses(a, [a[1]!, a[0]!]), false);
    assert.equal(sameAddresses(a, [a[0]!]), false);
    assert.equal(sameAddresses([], []), true);
  });
});
