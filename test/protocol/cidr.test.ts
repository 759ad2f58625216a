// CIDR allow-lists: parsing hostile text, the canonical form retries compare,
// narrowing by the gateway's bound, and matching socket addresses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AllowList, boundAllowList, validateAllowList } from '../../src/protocol/cidr.js';

test('canonical form: addresses become /32 or /128, IPv6 compressed and lower case, sorted, duplicates dropped', () => {
  assert.deepEqual(validateAllowList(['192.0.2.7', '2001:DB8:0:0:0:0:0:0/32', '10.0.0.0/8', '192.0.2.7/32', '::ffff:0:0/96', '::1'], 'f'), [
    '10.0.0.0/8',
    '192.0.2.7/32',
    '2001:db8::/32',
    '::1/128',
    '::ffff:0:0/96',
  ]);
  assert.deepEqual(validateAllowList(['0.0.0.0/0', '::/0'], 'f'), ['0.0.0.0/0', '::/0']);
  assert.deepEqual(validateAllowList(['fe80:0:0:1::/64'], 'f'), ['fe80:0:0:1::/64']);
});

test('hostile text: each problem named with the field and index', () => {
  const bad: [string, RegExp][] = [
    ['', /f\[0\]: "" .*it is empty/],
    ['192.0.2.0/', /prefix length must be 0 to 32/],
    ['192.0.2.0/-1', /prefix length must be 0 to 32/],
    ['192.0.2.0/0x10', /prefix length/],
    ['192.0.2.256', /not an IPv4 or IPv6 address/],
    ['fe80::1%eth0', /not an IPv4 or IPv6 address/],
    ['example.org', /not an IPv4 or IPv6 address/],
    ['192.0.2.1/24', /host bits set below \/24: write 192\.0\.2\.0\/24/],
    ['2001:db8::1/32', /write 2001:db8::\/32/],
    ['1.2.3.4/8/8', /prefix length/],
  ];
  for (const [text, re] of bad) assert.throws(() => validateAllowList([text], 'f'), (err: Error) => (assert.match(err.message, re, text), true));
  assert.throws(() => validateAllowList(new Array(65).fill('10.0.0.0/8'), 'f'), /f has 65 entries; at most 64/);
});

test('bounded by the gateway: nested blocks give the narrower, disjoint ones nothing', () => {
  assert.deepEqual(boundAllowList(['10.0.0.0/8'], ['10.1.0.0/16', '192.0.2.0/24']), ['10.1.0.0/16']);
  assert.deepEqual(boundAllowList(['10.1.2.0/24', '2001:db8::/48'], ['10.0.0.0/8', '2001:db8::/32']), ['10.1.2.0/24', '2001:db8::/48']);
  assert.deepEqual(boundAllowList([], ['10.0.0.0/8']), ['10.0.0.0/8']);
  assert.deepEqual(boundAllowList(['10.0.0.0/8'], []), ['10.0.0.0/8']);
  assert.deepEqual(boundAllowList([], []), []);
  assert.equal(boundAllowList(['192.0.2.0/24'], ['10.0.0.0/8']), undefined);
  assert.equal(boundAllowList(['10.0.0.0/8'], ['::/0']), undefined, 'families never mix');
});

test('matching: IPv4, IPv6, an IPv4 peer on a dual-stack listener, and nothing for an unknown address', () => {
  const list = new AllowList(['192.0.2.0/24', '2001:db8::/32']);
  assert.ok(list.allows('192.0.2.200'));
  assert.ok(!list.allows('192.0.3.1'));
  assert.ok(list.allows('::ffff:192.0.2.9'));
  assert.ok(!list.allows('::ffff:198.51.100.1'));
  assert.ok(list.allows('2001:db8:ffff::1'));
  assert.ok(!list.allows('2001:db9::1'));
  assert.ok(!list.allows(undefined));
  assert.ok(!list.allows('garbage'));
});
