// The WAN bench's packet emulator in its namespace lab: real veths, real raw sockets, real TCP.
// What it must do: nothing crosses without it; with it, 25 ms each way (ping ~50 ms), TCP bytes
// intact and in order; with 100 % loss nothing passes; afterwards no process or namespace is left.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { DEFAULT_LINK, WAN_ADDR, WanLab, ensureWanTools, parsePing, type Emulator } from '../../../bench/wan/lab.js';
import { buildEmulator, countersSince, parseCounters } from '../../../bench/wan/emulator.js';

/** Sends `bytes` pseudo-random bytes to host:port and prints their SHA-256. */
const SENDER = `
const [host, port, total] = process.argv.slice(1);
const hash = require('node:crypto').createHash('sha256');
const s = require('node:net').connect({ host, port: Number(port) });
let left = Number(total);
const write = () => {
  while (left > 0) {
    const chunk = require('node:crypto').randomBytes(Math.min(65536, left));
    left -= chunk.length;
    hash.update(chunk);
    if (!s.write(chunk)) return s.once('drain', write);
  }
  s.end();
};
s.on('connect', write);
s.on('error', (e) => { console.error(e.message); process.exit(1); });
s.on('close', () => console.log(hash.digest('hex')));
`;

/** Takes one connection, prints the byte count and SHA-256 of all it received. */
const RECEIVER = `
const [host, port] = process.argv.slice(1);
const hash = require('node:crypto').createHash('sha256');
let bytes = 0;
const server = require('node:net').createServer((c) => {
  c.on('data', (d) => { bytes += d.length; hash.update(d); });
  c.on('end', () => { console.log(bytes + ' ' + hash.digest('hex')); server.close(); });
});
server.listen(Number(port), host, () => console.error('listening'));
`;

test('parsePing reads ping -q summaries, with and without replies', () => {
  const ok = parsePing('--- 10.202.2.2 ping statistics ---\n10 packets transmitted, 10 received, 0% packet loss, time 1803ms\nrtt min/avg/max/mdev = 50.024/50.053/50.104/0.025 ms\n');
  assert.deepEqual(ok, { sent: 10, received: 10, minMs: 50.024, avgMs: 50.053, maxMs: 50.104 });
  const none = parsePing('--- 10.202.2.2 ping statistics ---\n2 packets transmitted, 0 received, 100% packet loss, time 1001ms\n');
  assert.equal(none.received, 0);
  assert.ok(Number.isNaN(none.avgMs));
  assert.throws(() => parsePing('ping: connect: Network is unreachable'), /no summary/);
});

test('parseCounters takes the last JSON line; countersSince subtracts all but the gauges', () => {
  const dir = (passed: number, queued: number, lateMaxUs: number) => ({ passed, passedBytes: passed * 1500, lost: 1, queueFull: 0, oversize: 0, sendErrors: 0, socketDrops: 0, pushedBack: 2, queued, late: 3, lateMaxUs });
  const a = { aToB: dir(10, 5, 7), bToA: dir(1, 0, 0) };
  const b = { aToB: dir(30, 2, 9), bToA: dir(4, 1, 1) };
  assert.deepEqual(parseCounters(`${JSON.stringify(a)}\nnoise\n${JSON.stringify(b)}\n`), b);
  const d = countersSince(a, b);
  assert.equal(d.aToB.passed, 20);
  assert.equal(d.aToB.lost, 0);
  assert.equal(d.aToB.queued, 2);
  assert.equal(d.aToB.lateMaxUs, 9);
  assert.throws(() => parseCounters('nothing'), /printed no counters/);
});

describe('WAN emulator (bench/wan) in network namespaces', () => {
  let lab: WanLab | undefined;
  let emulator: Emulator | undefined;
  const get = () => {
    assert.ok(lab, 'the lab was not set up (see the before hook)');
    return lab;
  };

  before(async () => {
    ensureWanTools((line) => console.error(line));
    lab = new WanLab(`swt${process.pid % 1000}`);
    // setup() also checks that gwa does not reach gwb while no emulator runs.
    await lab.setup();
  }, { timeout: 120_000 });

  after(async () => {
    const prefix = lab?.prefix;
    const pid = emulator?.proc.pid;
    await lab?.destroy();
    if (prefix) assert.deepEqual(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith(`${prefix}-`)), [], 'namespaces left');
    if (pid) assert.throws(() => process.kill(pid, 0), 'the emulator process is still there');
  }, { timeout: 60_000 });

  test('without the emulator gwa and gwb do not see each other', async () => {
    const p = await get().ping(2, 'gwa', WAN_ADDR.gwbWan, 1);
    assert.equal(p.received, 0);
  });

  test('with it: ping RTT about 50 ms, and TCP bytes across it arrive intact', { timeout: 120_000 }, async () => {
    const l = get();
    emulator = await l.startEmulator({ ...DEFAULT_LINK, loss: 0 });
    const rtt = await l.ping(10);
    assert.equal(rtt.received, 10, `ping lost replies: ${JSON.stringify(rtt)}`);
    // 2 x 25 ms, plus the stacks and the loop's +-50 us; a loaded machine adds (to the
    // average more than to the minimum), never removes.
    assert.ok(rtt.minMs >= 49.8 && rtt.minMs < 55 && rtt.avgMs < 75, `RTT ${JSON.stringify(rtt)} is not about 50 ms`);

    const receiver = l.spawn('prod', [process.execPath, '-e', RECEIVER, WAN_ADDR.prod, '7001'], 'receiver');
    await receiver.waitFor(/listening/, { stream: 'stderr' });
    // From cons through gwb, the emulator and gwa to prod: the gateways route.
    const sender = l.spawn('cons', [process.execPath, '-e', SENDER, WAN_ADDR.prod, '7001', String(24 * 2 ** 20)], 'sender');
    const [sent, received] = await Promise.all([sender.exited, receiver.exited]);
    assert.equal(sent, 0, sender.describe());
    assert.equal(received, 0, receiver.describe());
    const [bytes, digest] = receiver.stdout().trim().split(' ');
    assert.equal(Number(bytes), 24 * 2 ** 20);
    assert.equal(digest, sender.stdout().trim(), 'the bytes that arrived are not the bytes sent');

    const c = await emulator.stop();
    for (const d of [c.aToB, c.bToA]) {
      assert.ok(d.passed > 0);
      assert.equal(d.lost, 0);
      assert.equal(d.oversize, 0, 'a frame larger than the MTU: offloads are on');
      assert.equal(d.sendErrors, 0);
    }
    // The data went from cons (B) to prod (A): at least 24 MiB in MTU-sized frames.
    assert.ok(c.bToA.passedBytes > 24 * 2 ** 20 && c.bToA.passed > (24 * 2 ** 20) / 1514, JSON.stringify(c.bToA));
  });

  test('with 100 % loss nothing passes, and every frame is counted as lost', { timeout: 60_000 }, async () => {
    const l = get();
    emulator = await l.startEmulator({ ...DEFAULT_LINK, delayMs: 1, loss: 1 });
    const p = await l.ping(3, 'gwa', WAN_ADDR.gwbWan, 1);
    assert.equal(p.received, 0);
    const c = await emulator.stop();
    assert.equal(c.aToB.passed + c.bToA.passed, 0, JSON.stringify(c));
    assert.ok(c.aToB.lost >= 3, JSON.stringify(c));
  });

  test('bad arguments and a missing interface: exit code and a message, no crash', async () => {
    const binary = buildEmulator(get().dir);
    const usage = spawnSync(binary, ['--a', 'x'], { encoding: 'utf8' });
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /usage: wan-emulator/);
    const missing = spawnSync(binary, ['--a', 'no-such-if0', '--b', 'no-such-if1'], { encoding: 'utf8' });
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /no interface no-such-if0/);
  });
});
