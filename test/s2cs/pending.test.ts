// PendingByPeer.setLimits: a configuration reload changes the bounds of what is held.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { PendingByPeer } from '../../src/s2cs/pending.js';

test('setLimits: a shorter ttl applies to entries already held, in order; a lower max refuses new entries and keeps the held ones', async () => {
  const expired: string[] = [];
  const table = new PendingByPeer<number>({ max: 10, maxPerPeer: 10, ttlMs: 60_000 }, (key) => expired.push(key));
  for (const k of ['a', 'b', 'c']) assert.equal(table.add(k, '10.0.0.1', 1).ok, true);
  table.setLimits({ max: 2, maxPerPeer: 10, ttlMs: 50 });
  assert.equal(table.size, 3, 'held entries stay under a lower max');
  assert.deepEqual(table.add('d', '10.0.0.1', 1), { ok: false, why: 'full', held: 3 });
  assert.equal(table.add('e', '10.0.0.2', 1).ok, true, 'a quieter peer still gets room from the biggest');
  await sleep(300);
  assert.deepEqual(expired.sort(), ['b', 'c', 'e'], 'held entries expire by the new ttl (a was evicted for e)');
  assert.equal(table.size, 0);
  // A longer ttl holds new entries longer.
  table.setLimits({ max: 10, maxPerPeer: 10, ttlMs: 60_000 });
  table.add('f', '10.0.0.1', 1);
  await sleep(100);
  assert.equal(table.get('f'), 1);
  table.clear();
});
