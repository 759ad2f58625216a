// A UDP stream through two gateways with plain UDP on the WAN leg (--allow-plaintext-data
// on both gateways and the client's opt-in): consumer gateway's UDP listeners -> producer
// gateway's UDP listeners -> the producer application, and the replies back by flow.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { sendHello } from '../../src/app/controller.js';
import { parseAddress } from '../../src/protocol/address.js';
import { releaseStream, requestStream } from '../../src/s2uc/flows.js';
import { startGateway } from '../support/gateway.js';
import { sendSequence, settled, udpEcho, udpSender } from '../support/datagrams.js';

const OPTS = { insecure: true, deadlineMs: 20_000 };

test('numbered datagrams through two gateways, plain UDP on the WAN: none corrupt or duplicated, replies to their senders', async () => {
  const [prod, cons] = await Promise.all([startGateway(), startGateway()]);
  const echo = await udpEcho();
  const senders = await Promise.all([2, 3].map((i) => udpSender(i, `127.0.0.${i}`)));
  try {
    const uid = randomUUID();
    const hellos: Promise<unknown>[] = [];
    const warnings: string[] = [];
    const map = await requestStream(prod.address, cons.address, { numConn: 2, uid, protocol: 'udp' }, {
      ...OPTS,
      allowPlaintextData: true,
      onWarning: (w) => warnings.push(w),
      onAppSecret: (secret, server, role) => {
        if (role === 'PROD') hellos.push(sendHello(server, uid, 'PROD', [`127.0.0.1:${echo.address.port}`], { ...OPTS, appSecret: secret }));
      },
    });
    await Promise.all(hellos);
    assert.equal(map.wan, 'plain');
    assert.ok(warnings.some((w) => /plain UDP/.test(w)), 'the client is told the WAN leg is plain UDP');
    const count = 1000;
    // Sender i on consumer listener i: both listeners, both WAN hops, one target.
    await Promise.all(senders.map((s, i) => sendSequence(s, i + 2, parseAddress(map.consListeners[i]!, 'listener'), count, 1000, 8, 5)));
    await settled(() => senders.reduce((n, s) => n + s.tally.seen.size, 0));
    for (const s of senders) {
      const t = s.tally;
      console.log(`# two gateways, plain UDP WAN: sender ${t.sender}: sent ${count}, back ${t.seen.size}, lost ${t.lost(count)}, dup ${t.duplicates}, reordered ${t.reordered}, corrupt ${t.corrupt}`);
      assert.equal(t.corrupt, 0);
      assert.equal(t.duplicates, 0);
      assert.equal(t.foreign, 0);
      assert.ok(t.seen.size >= count / 2, `sender ${t.sender}: ${t.seen.size} of ${count} came back`);
    }
    const [p, c] = await Promise.all([prod.client.status({ uid }), cons.client.status({ uid })]);
    for (const [name, st] of [['producer', p.streams[0]!], ['consumer', c.streams[0]!]] as const) {
      assert.equal(st.protocol, 'udp', name);
      assert.ok(Number(st.datagrams_to_target) >= senders[0]!.tally.seen.size, `${name} counted the datagrams`);
      assert.equal(st.udp_flows, 2, `${name}: a flow per sender (the consumer gateway's flows are the producer gateway's senders)`);
    }
    const metrics = await cons.server.metrics.registry.metrics();
    assert.match(metrics, new RegExp(`^scistream_stream_datagrams_total\\{uid="${uid}",direction="to_target"\\} [1-9]`, 'm'));
    assert.match(metrics, /^scistream_udp_flows 2$/m);
    await releaseStream(uid, [prod.address, cons.address], OPTS);
  } finally {
    await Promise.all(senders.map((s) => s.close()));
    await echo.close();
    await Promise.all([prod.close(), cons.close()]);
  }
});
