// The live status page (s2cs --metrics-listen, `/`): in headless Chromium (Debian's
// chromium package) it loads without console errors and shows a live stream's rate;
// without JavaScript the server-rendered tables say the same; hostile text from
// callers (a token subject as owner) stays text; the HTTP port's answers to
// anything but its four GET paths.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Authenticator, Identity } from '../../src/auth/index.js';
import { escapeHtml } from '../../src/s2cs/status-page.js';
import { MONITOR_LIMITS } from '../../src/s2cs/monitor.js';
import { http, sinkStream, startMonitoredGateway, type MonitoredGateway, type SinkStream } from '../support/monitored.js';
import { launchChromium, type Browser } from '../support/chromium.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A token subject as an identity provider might hand over: markup, quotes, an event handler. */
const HOSTILE_OWNER = `<img src=x onerror="window.pwned=1">'"&</td><script>window.pwned=2</script>`;

/**
 * The gateway's Authenticator with every caller the hostile subject: what reaches
 * the page is exactly what a real provider's odd subject would be.
 */
class HostileSubject implements Authenticator {
  readonly mode = 'jwt';
  async authenticate(): Promise<Identity> {
    return { subject: HOSTILE_OWNER };
  }
}

describe('status page', () => {
  let m: MonitoredGateway;
  let stream: SinkStream;
  before(async () => {
    m = await startMonitoredGateway({ auth: new HostileSubject() });
    stream = await sinkStream(m.gw);
    // A steady trickle (about 20 Mbit/s): a rate to show, little CPU.
    stream.trickle(256 * 1024, 100);
  });
  after(async () => {
    await stream.close();
    await m.close();
  });

  test('without JavaScript: the server-rendered tables show the stream, its owner escaped, and a strict CSP', async () => {
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

    const json = JSON.parse((await http(`${m.url}/status.json`)).body) as { streams: { uid: string; owner: string; to_target_bps: number }[] };
    assert.equal(json.streams[0]?.uid, stream.uid);
    assert.equal(json.streams[0]?.owner, HOSTILE_OWNER);
  });

  test('in headless Chromium: loads without console errors, shows the live rate and its chart, the owner as text', async (t) => {
    const browser: Browser = await launchChromium({ width: 1400, height: 760 });
    t.after(() => browser.close());
    await browser.navigate(`${m.url}/`);
    // Live: the script has redrawn the table from /status.json at least twice (a chart needs two points).
    const live = await until('the page to update itself', 20_000, async () => {
      const v = await browser.evaluate<{ live: string; rate: string; points: number; uid: string } | null>(`(() => {
        const row = document.querySelector('#streams tr');
        const line = row && row.querySelector('svg.chart polyline');
        if (!row || !line) return null;
        return {
          live: document.getElementById('live').textContent,
          rate: row.querySelector('td.rate').textContent,
          points: line.getAttribute('points').trim().split(' ').length,
          uid: row.querySelector('code').textContent,
        };
      })()`);
      return v && v.live.startsWith('live, updated') && v.points >= 3 && /^[1-9]/.test(v.rate) ? v : undefined;
    });
    // For the picture in docs/, a longer history in the chart.
    if (process.env.S2CS_STATUS_SCREENSHOT) {
      await sleep(20_000);
      stream.trickle(256 * 1024, 100);
      await sleep(24_000);
    }
    assert.equal(live.uid, stream.uid);
    assert.match(live.rate, /^[1-9][0-9]*\.[0-9]{2} Mbit\/s \/ 0\.00 Mbit\/s$/);
    const owner = await browser.evaluate<string>(`document.querySelector('#streams tr').children[1].textContent`);
    assert.equal(owner, HOSTILE_OWNER, 'the owner shows as the text it is');
    assert.equal(await browser.evaluate<number>('document.images.length'), 0, 'no element made from the owner');
    assert.equal(await browser.evaluate<unknown>('window.pwned === undefined'), true, 'no script from the owner ran');
    const shot = await browser.screenshot();
    assert.ok(shot.subarray(1, 4).toString() === 'PNG');
    // `S2CS_STATUS_SCREENSHOT=docs/status-page.png node --test ...` keeps the picture for the docs.
    if (process.env.S2CS_STATUS_SCREENSHOT) await writeFile(process.env.S2CS_STATUS_SCREENSHOT, shot);
    assert.deepEqual(browser.problems, [], 'console errors, exceptions or CSP violations');
  });
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

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) assert.fail(`${what} not seen within ${ms / 1000} s`);
    await sleep(250);
  }
}

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
