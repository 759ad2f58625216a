// The control plane: how long a stream takes to set up, how many setups two
// gateways take per second, and what an idle stream costs an s2cs in memory.
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { spawn } from 'node:child_process';
import { freePort, freePortRange, spawnCli, watchChild, type Proc } from '../src/demo/procs.js';
import { controlSecretsOf, releaseStream, requestStream, type ConnectionMap } from '../src/s2uc/flows.js';
import { sendHello } from '../src/app/controller.js';
import { ConnectionPool, ControlConnection } from '../src/protocol/client.js';
import { createStreamCredentials } from '../src/security/stream-credentials.js';
import { agentPids, memory, track } from './tools.js';

const HOST = '127.0.0.1';

export interface Gateways {
  workers: number;
  /** Run by another checkout (bench --compare). */
  compared?: string;
  prod: { proc: Proc; address: string };
  cons: { proc: Proc; address: string };
  conn: { insecure: false; tls: { serverCert: string } };
}

/**
 * Two gateways with `workers` local workers each (0: forwarding inside s2cs), run
 * by this checkout or by `s2csScript` (another checkout's bin/s2cs.js, built).
 */
export async function startGateways(dir: string, ports: number, workers: number, s2csScript?: string): Promise<Gateways> {
  const tag = s2csScript ? '-compared' : '';
  const names = [`ctl-prod-w${workers}${tag}`, `ctl-cons-w${workers}${tag}`];
  const one = async (name: string) => {
    const [port, range] = await Promise.all([freePort(), freePortRange(ports)]);
    const args = ['start', '--state-dir', join(dir, name), '--port', String(port), '--listener-ip', HOST, '--port-range', `${range.first}-${range.last}`, '--workers', String(workers)];
    const proc = track(
      s2csScript ? watchChild('s2cs start', `${s2csScript} ${args.join(' ')}`, spawn(process.execPath, [s2csScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })) : spawnCli('s2cs', args),
    );
    await proc.waitFor(/s2cs ready/);
    // Known to the benchmark's final sweep should s2cs not stop them.
    agentPids(join(dir, name, `agents-${port}`));
    return { proc, address: `${HOST}:${port}` };
  };
  const [prod, cons] = await Promise.all(names.map(one));
  const bundle = join(dir, `ctl-gateways-w${workers}${tag}.pem`);
  writeFileSync(bundle, names.map((g) => readFileSync(join(dir, g, 'tls', 'cert.pem'), 'utf8')).join(''));
  return { workers, compared: s2csScript, prod: prod!, cons: cons!, conn: { insecure: false, tls: { serverCert: bundle } } };
}

/** A producer that sends one byte on every connection: the consumer's "first byte". */
export async function oneByteProducer(): Promise<{ server: Server; address: string }> {
  const server = createServer((s) => {
    s.on('error', () => {});
    s.end('x');
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return { server, address: `${HOST}:${(server.address() as { port: number }).port}` };
}

function firstByte(address: string): Promise<void> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    s.once('data', () => {
      s.destroy();
      resolve();
    });
    s.once('error', reject);
    s.once('end', () => reject(new Error(`the stream at ${address} closed before its first byte`)));
  });
}

/**
 * One stream as a workflow engine sets it up through the library: request to both
 * gateways, the producer's Hello as soon as the secret is issued, the connection
 * map, then a consumer connection until its first byte. Returns milliseconds; the
 * release afterwards is not timed. With a pool, control connections stay open from
 * one setup to the next (as an engine that sets up many streams keeps them);
 * without, every setup opens its own (TCP, TLS and HTTP/2 handshakes included).
 */
export async function setupOnce(gw: Gateways, producer: string, pool?: ConnectionPool): Promise<number> {
  const uid = randomUUID();
  const conn = { ...gw.conn, pool };
  const t0 = performance.now();
  const hellos: Promise<unknown>[] = [];
  const map = await requestStream(gw.prod.address, gw.cons.address, { numConn: 1, uid }, {
    ...conn,
    onAppSecret: (secret, server, role) => {
      if (role === 'PROD') hellos.push(sendHello(server, uid, 'PROD', [producer], { ...conn, appSecret: secret }));
    },
  });
  await Promise.all(hellos);
  await firstByte(map.consListeners[0]!);
  const ms = performance.now() - t0;
  await releaseStream(uid, [gw.prod.address, gw.cons.address], { ...conn, controlSecretFor: controlSecretsOf(map) });
  return ms;
}

/** The same through the programs: `s2uc request` and `s2app hello` as processes (Node start-up included). */
export async function setupOnceCli(gw: Gateways, producer: string): Promise<number> {
  const uid = randomUUID();
  const trust = ['--server-cert', gw.conn.tls.serverCert];
  const t0 = performance.now();
  const request = spawnCli('s2uc', [...trust, 'request', '--prod-s2cs', gw.prod.address, '--cons-s2cs', gw.cons.address, '--num-conn', '1', '--uid', uid, '--json']);
  const hello = spawnCli('s2app', ['hello', ...trust, '--s2cs', gw.prod.address, '--uid', uid, '--role', 'PROD', '--listeners', producer]);
  const [rc, hc] = await Promise.all([request.exited, hello.exited]);
  if (rc !== 0 || hc !== 0) throw new Error(`CLI setup failed\n${request.describe()}\n${hello.describe()}`);
  const map = JSON.parse(request.stdout().trim().split('\n').at(-1)!) as ConnectionMap;
  await firstByte(map.consListeners[0]!);
  const ms = performance.now() - t0;
  await releaseStream(uid, [gw.prod.address, gw.cons.address], { ...gw.conn, controlSecretFor: controlSecretsOf(map) });
  return ms;
}

/** Setups per second with `clients` clients setting streams up at once, for `seconds`. */
export async function setupRate(gw: Gateways, producer: string, clients: number, seconds: number): Promise<{ perSecond: number; setups: number; failures: number }> {
  const until = performance.now() + seconds * 1000;
  let setups = 0;
  let failures = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      // Each client keeps its own control connections, as separate engines would.
      const pool = new ConnectionPool();
      try {
        while (performance.now() < until) {
          try {
            await setupOnce(gw, producer, pool);
            setups++;
          } catch {
            failures++;
          }
        }
      } finally {
        pool.close();
      }
    }),
  );
  return { perSecond: setups / ((performance.now() - t0) / 1000), setups, failures };
}

export interface IdleMemory {
  streams: number;
  rssBytes: number;
}

/**
 * RSS of one s2cs and its `workers` workers holding n idle streams: consumer-side
 * streams with their listener (in a worker), connection map and per-stream TLS
 * credentials, as `s2uc request` leaves them.
 */
export async function idleStreamMemory(dir: string, counts: number[], workers: number): Promise<{ baseline: number; points: IdleMemory[] }> {
  const max = Math.max(...counts);
  const [port, range] = await Promise.all([freePort(), freePortRange(max + 8)]);
  const proc = track(
    spawnCli('s2cs', ['start', '--state-dir', join(dir, 'mem'), '--port', String(port), '--listener-ip', HOST, '--port-range', `${range.first}-${range.last}`, '--max-conn', '4', '--max-ports-per-user', String(max + 8), '--workers', String(workers)]),
  );
  await proc.waitFor(/s2cs ready/);
  const agents = join(dir, 'mem', `agents-${port}`);
  const cert = readFileSync(join(dir, 'mem', 'tls', 'cert.pem'));
  const bundle = join(dir, 'mem.pem');
  writeFileSync(bundle, cert);
  const client = await ControlConnection.open(`${HOST}:${port}`, { insecure: false, tls: { serverCert: bundle }, deadlineMs: 30_000 });
  const settle = async () => {
    await new Promise((r) => setTimeout(r, 1500));
    return [proc.pid!, ...agentPids(agents)].reduce((s, p) => s + memory(p).rss, 0);
  };
  try {
    const baseline = await settle();
    const points: IdleMemory[] = [];
    let made = 0;
    for (const n of [...counts].sort((a, b) => a - b)) {
      const todo = n - made;
      const batch = 25;
      for (let i = 0; i < todo; i += batch) {
        await Promise.all(
          Array.from({ length: Math.min(batch, todo - i) }, async () => {
            const uid = randomUUID();
            await client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
            const creds = await createStreamCredentials(uid);
            await client.update({ uid, remote_listeners: ['127.0.0.1:9'], role: 'CONS', credentials: creds.consumerSide });
          }),
        );
      }
      made = n;
      points.push({ streams: n, rssBytes: await settle() });
    }
    return { baseline, points };
  } finally {
    client.close();
    await proc.stop();
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}
