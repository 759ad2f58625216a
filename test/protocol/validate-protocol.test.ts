// Request.protocol (issue 21): tcp, udp or empty (tcp, what reference clients send);
// anything else INVALID_ARGUMENT naming the field, hostile text shown safely.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ScistreamError } from '../../src/protocol/errors.js';
import { requestFields, sameRequest, validateProtocol, validateRequest } from '../../src/protocol/validate.js';
import type { Request__Output } from '../../src/protocol/generated/scistream/Request.js';

const request = (over: Partial<Request__Output> = {}): Request__Output => ({
  uid: 'u-1',
  role: 'PROD',
  num_conn: 1,
  rate: 0,
  lifetime_s: 0,
  allow_from: [],
  listener_ports: [],
  protocol: '',
  ...over,
});

function invalid(protocol: string): ScistreamError {
  try {
    validateRequest(request({ protocol }), { maxConn: 8 });
  } catch (err) {
    assert.ok(err instanceof ScistreamError);
    assert.equal(err.kind, 'INVALID_ARGUMENT');
    assert.match(err.message, /^protocol /);
    return err;
  }
  assert.fail(`protocol ${JSON.stringify(protocol)} was accepted`);
}

test('empty and tcp are a TCP request, read exactly as a reference client\'s', () => {
  assert.deepEqual(validateRequest(request(), { maxConn: 8 }), { uid: 'u-1', role: 'PROD', numConn: 1, rate: 0 });
  assert.deepEqual(validateRequest(request({ protocol: 'tcp' }), { maxConn: 8 }), { uid: 'u-1', role: 'PROD', numConn: 1, rate: 0 });
  assert.equal(validateProtocol(''), 'tcp');
});

test('udp is a UDP request; a retry must repeat it', () => {
  const udp = validateRequest(request({ protocol: 'udp' }), { maxConn: 8 });
  assert.equal(udp.protocol, 'udp');
  const tcp = validateRequest(request(), { maxConn: 8 });
  assert.equal(sameRequest(udp, tcp), false);
  assert.equal(sameRequest(udp, validateRequest(request({ protocol: 'udp' }), { maxConn: 8 })), true);
  assert.match(requestFields(udp), /protocol=udp/);
  assert.doesNotMatch(requestFields(tcp), /protocol/);
});

test('anything else is INVALID_ARGUMENT naming protocol, hostile text cut and escaped', () => {
  for (const p of ['UDP', 'sctp', ' udp', 'udp\n', 'quic']) invalid(p);
  const astral = invalid('\u{1F4A5}'.repeat(5000));
  assert.ok(astral.message.length < 300, 'a long value is cut');
  assert.ok(!/[\uD800-\uDFFF](?![\uDC00-\uDFFF])/.test(astral.message.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, '')), 'no lone surrogate');
  const control = invalid('udp\u0000\u001b[31m');
  assert.ok(!control.message.includes('\u001b'), 'control characters escaped');
});
