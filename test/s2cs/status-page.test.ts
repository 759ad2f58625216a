// The live status page (s2cs --metrics-listen, `/`): in headless Chromium (Debian's
// chromium package) it loads without console errors and shows a live stream's rate,
// its stated rate and cap, and what --rate-policy reserve has left;
// without JavaScript the server-rendered tables say the same; hostile text from
// callers (a token subject as owner) stays text; the HTTP port's answers to
// anything but its four GET paths.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Metadata } from '@grpc/grpc-js';
import type { Authenticator, Identity } from '../../src/auth/index.js';
import { escapeHtml, stateText, statedRate } from '../../src/s2cs/status-page.js';
import { ControlConnection } from '../../src/protocol/client.js';
import { MONITOR_LIMITS } from '../../src/s2cs/monitor.js';
import { http, sinkStream, startMonitoredGateway, type MonitoredGateway, type SinkStream } from '../support/monitored.js';
import { launchChromium, type Browser } from '../support/chromium.js';
import { until } from '../support/until.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A token subject as an identity provider might hand over: markup, quotes, an event handler. */
const HOSTILE_OWNER = `<img src=x onerror="window.pwned=1">'"&</td><script>window.pwned=2</script>`;

/** An ordinary owner, for the capped stream (and the picture in docs/). */
const OWNER = 'alice@facility.example';

/**
 * The gateway's Authenticator: a caller's token is its subject, and a caller without
 * one is the hostile subject; what reaches the page is exactly what a real
 * provider's odd subject would be.
 */
class SubjectIsToken implements Authenticator {
  readonly mode = 'jwt';
  async authenticate(md: Metadata): Promise<Identity> {
    const token = md.get('authorization')[0];
    return { subject: typeof token === 'string' && token !== '' ? token : HOSTILE_OWNER };
  }
}

/** A control connection whose caller is `subject`. */
const as = (m: MonitoredGateway, subject: string) => new ControlConnection(m.gw.address, { insecure: true, deadlineMs: 10_000, token: subject });

describe('status page', () => {
  let m: MonitoredGateway;
  let stream: SinkStream;
  let capped: SinkStream;
  let alice: ControlConnection;
  before(async () => {
    // --rate-policy reserve, --capacity 1Gbit/s: every stream is held to its stated rate.
    m = await startMonitoredGateway({ auth: new SubjectIsToken(), ratePolicy: 'reserve', capacityBps: 125_000_000 });
    // The hostile owner's stream states 200 Mbit/s and carries a steady trickle (about 20 Mbit/s): a rate to show, little CPU.
    stream = await sinkStream(m.gw, { rate: 25_000 });
    stream.trickle(256 * 1024, 100);
    // An ordinary owner's stream held to 40 Mbit/s, offered a little more (about 42 Mbit/s).
    alice = as(m, OWNER);
    capped = await sinkStream(m.gw, { rate: 5_000, client: alice });
    capped.trickle(512 * 1024, 100);
  });
  after(async () => {
    await stream.close();
    await capped.close();
    alice.close();
    await m.close();
  });

  test('the stated-rate cell: held, not enforced, or none', () => {
    assert.equal(statedRate({ rate: 25_000, cap_bps: 25_000_000 }), '200 Mbit/s, held');
    assert.equal(statedRate({ rate: 10_000, cap_bps: 0 }), '80 Mbit/s, not enforced');
    assert.equal(statedRate({ rate: 0, cap_bps: 0 }), '-');
  });

  test('without JavaScript: the server-rendered tables show the stream, its owner escaped, and a strict CSP', async () => {
    // A connection that ends cleanly: the capped stream's last connections show it (access log).
    const once = connect(capped.client.remotePort!, '127.0.0.1');
    once.on('error', () => undefined);
    once.end('bye');
    await new Promise((r) => once.once('close', r));
    await until('the ended connection in status', 10_000, async () => {
      const st = JSON.parse((await http(`${m.url}/status.json`)).body) as { streams: { uid: string; recent_connections: { end: string }[] }[] };
      return st.streams.find((x) => x.uid === capped.uid)?.recent_connections.some((c) => c.end === 'clean') ? true : undefined;
    });
    // Let the rate window fill a little.
    await sleep(1500);
    const res = await http(`${m.url}/`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/=]+'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
    assert.ok(res.body.includes(`<code>${stream.uid}</code>`));
    assert.ok(res.body.includes(escapeHtml(HOSTILE_OWNER)));
    assert.ok(!res.body.includes('<img src=x'), 'the owner is not markup');
    assert.ok(!res.body.includes('<script>window.pwned'));
    // Nothing from elsewhere: no external URLs, one inline script.
    assert.doesNotMatch(res.body, /(src|href)="(https?:)?\/\//);
    assert.equal(res.body.match(/<script>/g)?.length, 1);
    assert.match(res.body, /[1-9][0-9]*\.[0-9]{2} Mbit\/s \/ 0\.00 Mbit\/s/, 'the current rate');
    assert.ok(res.body.includes('<td class="num stated">200 Mbit/s, held</td>'), 'the hostile owner\'s stream: stated rate and cap');
    assert.ok(res.body.includes('<td class="num stated">40 Mbit/s, held</td>'), 'the capped stream');
    assert.ok(res.body.includes('; rates: 240 Mbit/s of 1 Gbit/s reserved, 760 Mbit/s free'), 'the summary under reserve');
    assert.match(res.body, /<br><code>lan 127\.0\.0\.1:\d+, 3 B in, 0 B out, [\d.]+ s: clean<\/code>/, 'the last connection that ended');

    const json = JSON.parse((await http(`${m.url}/status.json`)).body) as { streams: { uid: string; owner: string; cap_bps: number }[]; reserved_bps: number };
    assert.equal(json.streams[0]?.uid, stream.uid);
    assert.equal(json.streams[0]?.owner, HOSTILE_OWNER);
    assert.equal(json.streams[0]?.cap_bps, 25_000_000);
    assert.equal(json.reserved_bps, 30_000_000);
  });

  test('in headless Chromium: loads without console errors, shows the live rate, the stated rate and cap, and its chart; the owner as text', async (t) => {
    const browser: Browser = await launchChromium({ width: 1600, height: 800 });
    t.after(() => browser.close());
    await browser.navigate(`${m.url}/`);
    // One stream's row as the script drew it, by uid.
    const row = (uid: string) =>
      browser.evaluate<{ live: string; summary: string; rate: string; stated: string; owner: string; points: number } | null>(`(() => {
        const row = [...document.querySelectorAll('#streams tr')].find((r) => r.querySelector('code')?.textContent === ${JSON.stringify(uid)});
        const line = row && row.querySelector('svg.chart polyline');
        if (!row || !line) return null;
        return {
          live: document.getElementById('live').textContent,
          summary: document.getElementById('summary').textContent,
          rate: row.querySelector('td.rate').textContent,
          stated: row.querySelector('td.stated').textContent,
          owner: row.children[1].textContent,
          points: line.getAttribute('points').trim().split(' ').length,
        };
      })()`);
    // Live: the script has redrawn the table from /status.json at least twice (a chart needs two points).
    const live = await until('the page to update itself', 20_000, async () => {
      const v = await row(stream.uid);
      return v && v.live.startsWith('live, updated') && v.points >= 3 && /^[1-9]/.test(v.rate) ? v : undefined;
    });
    assert.match(live.rate, /^[1-9][0-9]*\.[0-9]{2} Mbit\/s \/ 0\.00 Mbit\/s$/);
    assert.equal(live.stated, '200 Mbit/s, held');
    assert.equal(live.owner, HOSTILE_OWNER, 'the owner shows as the text it is');
    assert.match(live.summary, /^2 stream\(s\), .*; rates: 240 Mbit\/s of 1 Gbit\/s reserved, 760 Mbit\/s free$/);
    const held = await row(capped.uid);
    assert.equal(held?.stated, '40 Mbit/s, held');
    assert.equal(held?.owner, OWNER);
    assert.equal(await browser.evaluate<number>('document.images.length'), 0, 'no element made from the owner');
    assert.equal(await browser.evaluate<unknown>('window.pwned === undefined'), true, 'no script from the owner ran');
    const shot = await browser.screenshot();
    assert.ok(shot.subarray(1, 4).toString() === 'PNG');
    // `S2CS_STATUS_SCREENSHOT=docs/status-page.png node --test ...` keeps a picture for the docs.
    if (process.env.S2CS_STATUS_SCREENSHOT) await writeFile(process.env.S2CS_STATUS_SCREENSHOT, await operatorView(browser));
    assert.deepEqual(browser.problems, [], 'console errors, exceptions or CSP violations');
  });

  /**
   * The picture in docs/: what an operator sees, not the escaping test. The hostile
   * owner's stream is released; a second ordinary stream joins, one req is refused
   * for want of capacity, and the charts get a few minutes' worth of history.
   */
  async function operatorView(browser: Browser): Promise<Buffer> {
    const bob = as(m, 'bob@facility.example');
    // 400 Mbit/s stated, about 20 Mbit/s sent, then about 40.
    const second = await sinkStream(m.gw, { rate: 50_000, client: bob });
    try {
      second.trickle(256 * 1024, 100);
      await m.gw.client.release({ uid: stream.uid });
      await assert.rejects(bob.req({ uid: 'bob-second-run', role: 'CONS', num_conn: 4, rate: 75_000 }), /RESOURCE_EXHAUSTED/);
      await sleep(20_000);
      second.trickle(256 * 1024, 100);
      await sleep(24_000);
      const rows = await browser.evaluate<number>(`document.querySelectorAll('#streams tr').length`);
      assert.equal(rows, 2, 'the hostile owner is out of the picture');
      return await browser.screenshot();
    } finally {
      await bob.release({ uid: second.uid }).catch(() => undefined);
      await second.close();
      bob.close();
    }
  }
});

describe('the monitor port under hostile requests', () => {
  let m: MonitoredGateway;
  before(async () => {
    m = await startMonitoredGateway();
  });
  after(() => m.close());

  test('unknown paths 404, other methods 405 with Allow, HEAD without a body; never a crash', async () => {
    assert.equal((await http(`${m.url}/nope`)).status, 404);
    assert.equal((await http(`${m.url}/metrics/../../etc/passwd`)).status, 404);
    assert.equal((await http(`${m.url}/__proto__`)).status, 404);
    const post = await http(`${m.url}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    assert.equal((await http(`${m.url}/`, { method: 'DELETE' })).status, 405);
    const head = await http(`${m.url}/healthz`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    // Query strings do not change the route.
    assert.equal((await http(`${m.url}/healthz?x=<script>`)).status, 200);
    assert.equal((await http(`${m.url}/healthz`)).body, 'ok\n');
  });

  test('oversized headers are refused, a garbled request gets 400, a stalled one is cut; the server goes on', async () => {
    const huge = await raw(m.monitor.port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(MONITOR_LIMITS.maxHeaderSize * 2)}\r\n\r\n`);
    assert.match(huge, /^HTTP\/1\.1 431 /);
    assert.match(await raw(m.monitor.port, 'NOT HTTP AT ALL\r\n\r\n'), /^HTTP\/1\.1 400 /);
    // A request that never finishes its headers is closed by headersTimeout (checked after it, with slack).
    const stalled = connect({ host: '127.0.0.1', port: m.monitor.port });
    stalled.on('error', () => undefined);
    stalled.resume();
    stalled.write('GET / HTTP/1.1\r\nHost: x\r\n');
    const closed = await Promise.race([new Promise<boolean>((resolve) => stalled.once('close', () => resolve(true))), sleep(MONITOR_LIMITS.requestTimeoutMs + 15_000).then(() => false)]);
    stalled.destroy();
    assert.ok(closed, 'the stalled request was closed');
    assert.equal((await http(`${m.url}/healthz`)).status, 200, 'still serving');
  });
});


/** Sends raw bytes and returns what comes back until the server closes (or 10 s). */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let got = '';
    s.on('data', (c: Buffer) => (got += c.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => resolve(got));
    s.setTimeout(10_000, () => s.destroy());
    s.write(request);
  });
}

test('stateText: the state, why when broken, and when the gateway lets the stream go', () => {
  assert.equal(stateText({ state: 'ready', broken_reason: '', expires_in_s: 0 }), 'ready');
  assert.equal(stateText({ state: 'ready', broken_reason: '', expires_in_s: 3600 }), 'ready (let go in 1h00m)');
  assert.equal(stateText({ state: 'broken', broken_reason: 'its last connection ended abnormally (ECONNRESET)', expires_in_s: 4 }), 'broken: its last connection ended abnormally (ECONNRESET) (let go in 4s)');
  assert.equal(
    stateText({ state: 'releasing', broken_reason: '', expires_in_s: 0, releasing_on: ['gwa2: 2 connection(s) may still forward; not confirmed for 5 s'] }),
    'releasing: not released on gwa2: 2 connection(s) may still forward; not confirmed for 5 s',
  );
});
