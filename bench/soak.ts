// `npm run soak`: the hostile-input generators of the CI suite (test/support/hostile.ts), run
// for minutes instead of seconds against one real s2cs process: generated control messages
// over every rpc, malformed HTTP/2 connections, raw bytes to data listeners. Prints what was
// sent, the statuses by code, crashes, and the process's descriptors and RSS before and after.
// Exit code 1 when anything is outside the contract (a crash, a status outside the table,
// ports still reserved, descriptors not back at baseline).
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import {
  H2_KINDS,
  Rng,
  Sender,
  Tally,
  describeItem,
  fdCount,
  fuzzSeed,
  garbageConnection,
  h2Garbage,
  messages,
  pump,
  releaseAll,
  rssMiB,
  settleFds,
  startS2cs,
  uidPool,
  type FuzzItem,
  type S2csUnderTest,
} from '../test/support/hostile.js';

// grpc-js names loopback IPs as TLS server names, which Node flags on every call.
process.noDeprecation = true;

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    seed: { type: 'string' },
    connections: { type: 'string', default: '128' },
    round: { type: 'string', default: '5000' },
    tls: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const minutes = Number(values.minutes);
const concurrency = Number(values.connections);
const roundSize = Number(values.round);
if (!(minutes > 0) || !Number.isInteger(concurrency) || concurrency < 1 || !Number.isInteger(roundSize) || roundSize < 1) {
  process.stderr.write('soak: --minutes must be > 0, --connections and --round whole numbers >= 1\n');
  process.exit(2);
}
const seed = values.seed !== undefined ? fuzzSeed({ SCISTREAM_FUZZ_SEED: values.seed }) : fuzzSeed();
const say = (line: string) => process.stderr.write(`${line}\n`);

/** A data target that reads and drops everything. */
const sinkSockets = new Set<Socket>();
const sink = createServer((s) => {
  sinkSockets.add(s);
  s.on('error', () => undefined);
  s.on('close', () => sinkSockets.delete(s));
  s.resume();
});
await new Promise<void>((resolve) => sink.listen({ host: '127.0.0.1', port: 0 }, resolve));
const sinkAddress = `127.0.0.1:${(sink.address() as { port: number }).port}`;

const started = new Date();
const end = Date.now() + minutes * 60_000;
const rng = new Rng(seed);
const tally = new Tally();
const malformed = new Map<string, number>();
const crashes: string[] = [];
let dataConnections = 0;
let rounds = 0;

let gw: S2csUnderTest = await startS2cs({ ports: 64, tls: values.tls });
let sender = new Sender(gw.address, gw.credentials, 5000);
await sender.typed.status({ uid: '' });
await sender.rawCall('/scistream.Control/status', Buffer.alloc(0));
// Baselines of the process in service; a restart after a crash takes new ones.
let fdBefore = fdCount(gw.pid);
let rssBefore = rssMiB(gw.pid);
let rssPeak = rssBefore;
say(`soak: seed ${seed} (replay: --seed ${seed}), ${minutes} min, ${concurrency} calls in flight, s2cs pid ${gw.pid} at ${gw.address}${values.tls ? ' (TLS)' : ''}; descriptors ${fdBefore}, RSS ${rssBefore} MiB`);

/** After a crash: note what was in flight, start a fresh s2cs, go on. */
async function restart(inFlight: FuzzItem[]): Promise<void> {
  crashes.push(
    `round ${rounds}: s2cs exited; in flight:\n${inFlight.slice(0, 12).map((i) => `  - ${describeItem(i)}`).join('\n')}\n` +
      `stderr tail:\n${gw.proc.stderr().split('\n').slice(-20).join('\n')}`,
  );
  say(`soak: s2cs died in round ${rounds}; restarting`);
  sender.close();
  await gw.stop();
  gw = await startS2cs({ ports: 64, tls: values.tls });
  sender = new Sender(gw.address, gw.credentials, 5000);
  await sender.typed.status({ uid: '' });
  await sender.rawCall('/scistream.Control/status', Buffer.alloc(0));
  fdBefore = fdCount(gw.pid);
  rssBefore = rssMiB(gw.pid);
}

while (Date.now() < end) {
  rounds++;
  const r = rng.fork();
  const pool = uidPool(r.fork());
  // Generated messages.
  try {
    await pump(sender, messages(r.fork(), roundSize, pool), tally, {
      concurrency,
      batch: 500,
      onBatch: async (_done, inFlight) => {
        rssPeak = Math.max(rssPeak, gw.alive() ? rssMiB(gw.pid) : 0);
        if (!gw.alive()) throw Object.assign(new Error('crash'), { inFlight });
      },
    });
  } catch (err) {
    await restart((err as { inFlight?: FuzzItem[] }).inFlight ?? []);
    continue;
  }
  // Malformed HTTP/2 and raw bytes on the control port.
  const hr = r.fork();
  for (let i = 0; i < 4; i++) {
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, () => {
        const kind = hr.pick(H2_KINDS);
        malformed.set(kind, (malformed.get(kind) ?? 0) + 1);
        return garbageConnection(gw.address, h2Garbage(hr.fork(), kind), hr.int(10, 300));
      }),
    );
    void outcomes;
  }
  // Raw bytes to a data listener, before and after its targets.
  if (gw.alive()) {
    try {
      const uid = `soak-data-${rounds}`;
      const res = await sender.typed.req({ uid, role: 'CONS', num_conn: 2, rate: 0 });
      const dr = r.fork();
      const burst = () => Promise.all(res.listeners.flatMap((l) => Array.from({ length: 20 }, () => garbageConnection(l, dr.bytes(dr.pick([0, 1, 1000, 100_000])), dr.int(0, 200)))));
      await burst();
      await sender.typed.update({ uid, role: 'CONS', remote_listeners: [sinkAddress] });
      await burst();
      dataConnections += 2 * 20 * res.listeners.length;
      await sender.typed.release({ uid });
    } catch (err) {
      if (gw.alive()) say(`soak: data round ${rounds}: ${(err as Error).message}`);
    }
  }
  if (!gw.alive()) {
    await restart([]);
    continue;
  }
  // What the round reserved goes back, so that the next round finds free ports.
  const cleaned = await releaseAll(sender).catch((err: Error) => ({ reservedPorts: -1, leftUids: [err.message] }));
  if (cleaned.reservedPorts !== 0) say(`soak: round ${rounds}: ${cleaned.reservedPorts} ports still reserved after releasing every listed uid (${cleaned.leftUids.join(' ')})`);
  rssPeak = Math.max(rssPeak, rssMiB(gw.pid));
  const left = Math.max(0, Math.round((end - Date.now()) / 1000));
  say(`soak: round ${rounds}: ${tally.sent} messages, ${[...malformed.values()].reduce((a, b) => a + b, 0)} malformed connections, ${dataConnections} data connections; descriptors ${fdCount(gw.pid)}, RSS ${rssMiB(gw.pid)} MiB; ${left} s left`);
}

const cleanup = await releaseAll(sender);
const fdAfter = await settleFds(gw.pid, fdBefore + 5, 15_000);
const rssAfter = rssMiB(gw.pid);
const summary = {
  date: started.toISOString(),
  minutes,
  seed,
  tls: values.tls,
  rounds,
  messagesSent: tally.sent,
  statuses: Object.fromEntries([...tally.byCode].sort((a, b) => b[1] - a[1])),
  statusesByRpc: Object.fromEntries([...tally.byRpc].map(([k, m]) => [k, Object.fromEntries(m)])),
  outsideTheTable: tally.violations.length,
  malformedConnections: Object.fromEntries(malformed),
  dataConnections,
  crashes: crashes.length,
  descriptors: { before: fdBefore, after: fdAfter },
  rssMiB: { before: rssBefore, peak: rssPeak, after: rssAfter },
  reservedPortsAfter: cleanup.reservedPorts,
};
sender.close();
await gw.stop();
for (const s of sinkSockets) s.destroy();
sink.close();

say('');
say(`soak summary (seed ${seed}, ${minutes} min, ${rounds} rounds, started ${summary.date})`);
for (const line of tally.summary().split('\n')) say(`  ${line}`);
say(`  malformed control connections: ${Object.entries(summary.malformedConnections).map(([k, v]) => `${k}=${v}`).join(' ')}`);
say(`  raw data connections: ${dataConnections}`);
say(`  crashes: ${crashes.length}; answers outside the table: ${tally.violations.length}; ports reserved after: ${cleanup.reservedPorts}`);
say(`  descriptors${crashes.length ? ' (of the last s2cs started)' : ''} before ${fdBefore}, after ${fdAfter}; RSS before ${rssBefore} MiB, peak ${rssPeak} MiB, after ${rssAfter} MiB`);
for (const c of crashes) say(`crash: ${c}`);
for (const v of tally.violations) say(`outside the table: ${v}`);
if (values.json) writeFileSync(values.json, JSON.stringify(summary, null, 2) + '\n');
process.stdout.write(JSON.stringify(summary) + '\n');
const ok = crashes.length === 0 && tally.violations.length === 0 && cleanup.reservedPorts === 0 && fdAfter <= fdBefore + 5;
process.exit(ok ? 0 : 1);
