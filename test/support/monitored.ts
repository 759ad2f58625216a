// A gateway with its monitor (s2cs --metrics-listen) on loopback, and a CONS
// stream whose target is a sink, for the metrics and status-page tests.
import { randomUUID } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { startGateway, type TestGateway } from './gateway.js';
import { startMonitor, type Monitor } from '../../src/s2cs/monitor.js';
import { createLogger } from '../../src/log.js';
import type { ControlServerOptions } from '../../src/s2cs/server.js';
import type { ControlConnection } from '../../src/protocol/client.js';

export interface MonitoredGateway {
  gw: TestGateway;
  monitor: Monitor;
  /** http://127.0.0.1:PORT */
  url: string;
  close(): Promise<void>;
}

export async function startMonitoredGateway(opts: Partial<ControlServerOptions> = {}): Promise<MonitoredGateway> {
  const gw = await startGateway(opts);
  const monitor = await startMonitor({ host: '127.0.0.1', port: 0, gateway: gw.server, title: `s2cs ${gw.address}`, logger: createLogger({ silent: true }) });
  return {
    gw,
    monitor,
    url: `http://127.0.0.1:${monitor.port}`,
    async close() {
      await gw.close();
      await monitor.close();
    },
  };
}

export interface SinkStream {
  uid: string;
  /** The producer side's connection into the stream's listener. */
  client: Socket;
  /** Bytes the sink (the stream's target) has received. */
  received(): number;
  /** Writes `bytes` into the stream and waits until the sink has them all. */
  send(bytes: number): Promise<void>;
  /** Keeps writing `chunk` every `everyMs` (a steady rate without hogging the CPU) until close; calls add up. */
  trickle(chunk: number, everyMs: number): void;
  close(): Promise<void>;
}

export interface SinkStreamOptions {
  uid?: string;
  /** Request.rate, kB/s (0: not stated). */
  rate?: number;
  /** Who asks (a connection with its own token); the gateway's own client by default. */
  client?: ControlConnection;
}

/** A CONS stream of one connection, to a sink that counts what it gets. */
export async function sinkStream(gw: TestGateway, opts: SinkStreamOptions = {}): Promise<SinkStream> {
  const { uid = randomUUID(), rate = 0, client: control = gw.client } = opts;
  let got = 0;
  const conns = new Set<Socket>();
  const sink: Server = createServer((s) => {
    conns.add(s);
    s.on('error', () => undefined);
    s.on('data', (c: Buffer) => (got += c.length));
    s.on('close', () => conns.delete(s));
  });
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
  const target = `127.0.0.1:${(sink.address() as { port: number }).port}`;
  let r: Awaited<ReturnType<ControlConnection['req']>>;
  try {
    r = await control.req({ uid, role: 'CONS', num_conn: 1, rate });
    await control.update({ uid, remote_listeners: [target], role: 'CONS' });
  } catch (err) {
    // A refused stream leaves no sink behind.
    await new Promise((resolve) => sink.close(resolve));
    throw err;
  }
  const [host, port] = r.listeners[0]!.split(':');
  const client = connect({ host: host!, port: Number(port) });
  client.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  const timers: NodeJS.Timeout[] = [];
  return {
    uid,
    client,
    received: () => got,
    async send(bytes) {
      const goal = got + bytes;
      client.write(Buffer.alloc(bytes, 0x5a));
      const end = Date.now() + 20_000;
      while (got < goal) {
        if (Date.now() > end) throw new Error(`the sink got ${got} of ${goal} bytes`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    trickle(chunk, everyMs) {
      const buf = Buffer.alloc(chunk, 0x5a);
      timers.push(setInterval(() => {
        if (client.writableLength < 4 * chunk) client.write(buf);
      }, everyMs));
    },
    async close() {
      for (const t of timers) clearInterval(t);
      client.destroy();
      for (const s of conns) s.destroy();
      await new Promise((resolve) => sink.close(resolve));
    },
  };
}

/** GET (or another method) against the monitor: status, headers and body. */
export async function http(url: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: string }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, headers: res.headers, body: await res.text() };
}
