// The open-files need of a forwarding process (limits/nofile.ts): how it is read and computed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE_DESCRIPTORS, descriptorNeed, nofileLimit, nofileWarning } from '../../src/limits/nofile.js';

const LIMITS = (soft: string, hard: string) => `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                 ${hard}                 files\n`;
const DEFAULTS = { ports: 101, processes: 1, maxConn: 64, maxConnsPerListener: 128, maxBufferMemory: 1024 ** 3, bufferSize: 4 * 1024 ** 2 };

test('the limit is read from /proc/self/limits; unlimited is no limit', () => {
  assert.deepEqual(nofileLimit(LIMITS('1024', '524288')), { soft: 1024, hard: 524288 });
  assert.deepEqual(nofileLimit(LIMITS('1024', 'unlimited')), { soft: 1024, hard: undefined });
  assert.equal(nofileLimit(LIMITS('unlimited', 'unlimited')), undefined);
  const own = nofileLimit();
  assert.ok(own === undefined || own.soft > 0);
});

test('the need: listeners, and two descriptors per connection the buffer budget admits, capped by the listeners', () => {
  // 1 GiB over 2.25 MiB: 455 connections.
  const n = descriptorNeed(DEFAULTS);
  assert.equal(n.conns, 455);
  assert.equal(n.need, BASE_DESCRIPTORS + 101 + 2 * 455);
  // Few listeners and few connections each: they bound it.
  assert.equal(descriptorNeed({ ...DEFAULTS, ports: 2, maxConnsPerListener: 10 }).conns, 20);
  // Workers share the ports and the budget.
  const w = descriptorNeed({ ...DEFAULTS, processes: 4 });
  assert.equal(w.listeners, 26);
  assert.equal(w.conns, 113);
});

test('a warning only below the need, with the numbers and what to do', () => {
  assert.equal(nofileWarning(DEFAULTS, { soft: 1100, hard: 1100 }), undefined);
  const w = nofileWarning(DEFAULTS, { soft: 1024, hard: 4096 })!;
  assert.match(w, /is 1024, below the 1075 descriptors this process may need/);
  assert.match(w, /ulimit -n 1075/);
  assert.doesNotMatch(w, /not even one stream/);
  assert.match(nofileWarning(DEFAULTS, { soft: 100, hard: 100 })!, /not even one stream of --max-conn 64 connections fits.*raise the hard limit too/);
});

test('pending (unauthenticated) connections count one descriptor each', () => {
  const base = { ports: 4, processes: 1, maxConn: 0, maxConnsPerListener: 128, maxBufferMemory: 1024 ** 3, bufferSize: 4 * 1024 * 1024 };
  assert.equal(descriptorNeed({ ...base, pendingConns: 1024 }).need, descriptorNeed(base).need + 1024);
  assert.match(nofileWarning({ ...base, pendingConns: 1024 }, { soft: 256, hard: 4096 })!, /and 1024 pending connections \(--max-pending-conns\)/);
});
