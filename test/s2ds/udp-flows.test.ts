// A UDP stream's flow table: a flow per sender per listener, ids that map to their
// listener (id % listeners), reused once ended, and the bound per listener.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RemoteInfo } from 'node:dgram';
import { FlowTable } from '../../src/s2ds/udp/flows.js';

const from = (address: string, port: number): RemoteInfo => ({ address, port, family: 'IPv4', size: 0 });

test('one flow per sender and listener; ids are listener + k * listeners, reused once ended; bounded per listener', () => {
  const t = new FlowTable(3, 2);
  const a = t.flowOf(1, from('10.0.0.1', 4000), 0)!;
  assert.equal(a.opened, true);
  assert.equal(a.flow.id % 3, 1);
  assert.equal(t.flowOf(1, from('10.0.0.1', 4000), 1)!.opened, false, 'the same sender, the same flow');
  const b = t.flowOf(1, from('10.0.0.1', 4001), 0)!;
  assert.notEqual(b.flow.id, a.flow.id);
  assert.equal(b.flow.id % 3, 1);
  assert.equal(t.flowOf(1, from('10.0.0.2', 4000), 0), undefined, 'a third sender on listener 1 is over the bound');
  const c = t.flowOf(2, from('10.0.0.1', 4000), 0)!;
  assert.equal(c.flow.id % 3, 2, 'the same sender on another listener is another flow');
  assert.ok(t.remove(a.flow.id));
  assert.ok(!t.remove(a.flow.id), 'removed once');
  const d = t.flowOf(1, from('10.0.0.3', 5000), 5)!;
  assert.equal(d.flow.id, a.flow.id, 'the id is reused');
  assert.deepEqual(t.idle(3).map((f) => f.id), [b.flow.id, c.flow.id]);
  assert.equal(t.size, 3);
});
