// Headless Chromium (Debian's chromium package) driven over the DevTools protocol
// on a pipe (--remote-debugging-pipe: JSON messages ended by NUL on fds 3 and 4),
// so no WebSocket client is needed. One page; console errors, uncaught exceptions
// and browser log errors (CSP violations, failed loads) are collected.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

export const CHROMIUM = '/usr/bin/chromium';

type Json = Record<string, unknown>;

export interface Browser {
  /** Problems the page reported: console.error/warn, exceptions, log entries of level error or warning. */
  readonly problems: string[];
  navigate(url: string): Promise<void>;
  /** Evaluates `expression` in the page; returns its value (JSON). */
  evaluate<T>(expression: string): Promise<T>;
  screenshot(): Promise<Buffer>;
  close(): Promise<void>;
}

export async function launchChromium(opts: { width?: number; height?: number } = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (npm test does, as root: scripts/test-packages.sh)`);
  const profile = await mkdtemp(join(tmpdir(), 'scistream-chromium-'));
  const args = [
    '--headless=new',
    '--remote-debugging-pipe',
    `--user-data-dir=${profile}`,
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-gpu',
    '--disable-extensions',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage',
    '--hide-scrollbars',
    '--mute-audio',
    `--window-size=${opts.width ?? 1280},${opts.height ?? 800}`,
    ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
    'about:blank',
  ];
  // Its own process group: chromium starts helpers (zygote, renderer, utility), all ended together.
  const child: ChildProcess = spawn(CHROMIUM, args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], detached: true });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const toBrowser = child.stdio[3] as Writable;
  const fromBrowser = child.stdio[4] as Readable;
  toBrowser.on('error', () => undefined);

  let nextId = 1;
  const waiting = new Map<number, { resolve: (v: Json) => void; reject: (e: Error) => void }>();
  const listeners: ((method: string, params: Json, sessionId?: string) => void)[] = [];
  let pending = '';
  fromBrowser.setEncoding('utf8');
  fromBrowser.on('data', (chunk: string) => {
    pending += chunk;
    let end;
    while ((end = pending.indexOf('\0')) >= 0) {
      const msg = JSON.parse(pending.slice(0, end)) as { id?: number; result?: Json; error?: { message: string }; method?: string; params?: Json; sessionId?: string };
      pending = pending.slice(end + 1);
      if (msg.id !== undefined) {
        const w = waiting.get(msg.id);
        waiting.delete(msg.id);
        if (msg.error) w?.reject(new Error(`chromium: ${msg.error.message}`));
        else w?.resolve(msg.result ?? {});
      } else if (msg.method) {
        for (const l of listeners) l(msg.method, msg.params ?? {}, msg.sessionId);
      }
    }
  });
  void exited.then(() => {
    for (const w of waiting.values()) w.reject(new Error(`chromium exited: ${stderr}`));
    waiting.clear();
  });

  const send = (method: string, params: Json = {}, sessionId?: string): Promise<Json> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`chromium did not answer ${method} within 20 s (${stderr})`));
      }, 20_000);
      waiting.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      toBrowser.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });

  const stop = async () => {
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      // gone already
    }
    const killer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }, 5000);
    await exited;
    clearTimeout(killer);
    // Helpers of the group may outlive the main process by a moment.
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // none left
    }
    await rm(profile, { recursive: true, force: true });
  };

  try {
    const { targetId } = (await send('Target.createTarget', { url: 'about:blank' })) as { targetId: string };
    const { sessionId } = (await send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string };
    const problems: string[] = [];
    let loaded: (() => void) | undefined;
    listeners.push((method, params, sid) => {
      if (sid !== sessionId) return;
      if (method === 'Runtime.consoleAPICalled' && ['error', 'warning', 'assert'].includes(String(params.type))) {
        problems.push(`console.${String(params.type)}: ${JSON.stringify(params.args)}`);
      } else if (method === 'Runtime.exceptionThrown') {
        problems.push(`exception: ${JSON.stringify(params.exceptionDetails)}`);
      } else if (method === 'Log.entryAdded') {
        const entry = params.entry as { level: string; text: string; url?: string };
        if (entry.level === 'error' || entry.level === 'warning') problems.push(`log ${entry.level}: ${entry.text} ${entry.url ?? ''}`);
      } else if (method === 'Page.loadEventFired') {
        loaded?.();
      }
    });
    await send('Runtime.enable', {}, sessionId);
    await send('Log.enable', {}, sessionId);
    await send('Page.enable', {}, sessionId);
    return {
      problems,
      async navigate(url) {
        const load = new Promise<void>((resolve) => (loaded = resolve));
        const r = (await send('Page.navigate', { url }, sessionId)) as { errorText?: string };
        if (r.errorText) throw new Error(`chromium could not load ${url}: ${r.errorText}`);
        await load;
      },
      async evaluate<T>(expression: string) {
        const r = (await send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, sessionId)) as { result: { value?: T }; exceptionDetails?: Json };
        if (r.exceptionDetails) throw new Error(`evaluating ${expression}: ${JSON.stringify(r.exceptionDetails)}`);
        return r.result.value as T;
      },
      async screenshot() {
        const r = (await send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: false }, sessionId)) as { data: string };
        return Buffer.from(r.data, 'base64');
      },
      async close() {
        await send('Browser.close').catch(() => undefined);
        await stop();
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
