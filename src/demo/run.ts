// `npm run demo`: two gateways, a producer and a consumer on loopback, driven
// through the real CLIs as separate processes, exactly as a user would.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { UsageError, addExamples, integer, option, runCli } from '../cli.js';
import { formatBytes, parseSize } from '../units.js';
import { freePort, freePortRange, spawnCli, type Proc } from './procs.js';

interface DemoFlags {
  bytes: number;
  numConn: number;
}

const running: Proc[] = [];
const start = (p: Proc) => {
  running.push(p);
  return p;
};
const say = (s: string) => process.stdout.write(`\n== ${s}\n`);

async function stopAll(): Promise<void> {
  await Promise.all(running.map((p) => p.stop()));
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write('\ndemo: interrupted; stopping everything it started\n');
    stopAll().finally(() => process.exit(130));
  });
}

async function main(totalBytes: number, numConn: number): Promise<void> {
  const perConn = Math.floor(totalBytes / numConn);
  if (perConn < 1) throw new UsageError(`--bytes ${totalBytes} is less than one byte per connection; give at least --num-conn bytes`);
  // The gateways' certificates live here for the demo's length only.
  const state = mkdtempSync(join(tmpdir(), 'scistream-demo-'));
  process.on('exit', () => rmSync(state, { recursive: true, force: true }));
  const [prodPort, consPort, prodRange, consRange] = await Promise.all([freePort(), freePort(), freePortRange(16), freePortRange(16)]);
  const prodS2cs = `127.0.0.1:${prodPort}`;
  const consS2cs = `127.0.0.1:${consPort}`;

  say(`starting the producer facility's gateway (s2cs on ${prodS2cs}) and the consumer facility's (s2cs on ${consS2cs}), control channel over TLS`);
  // Control ports and data listeners on loopback only: nothing the demo starts is reachable from the network.
  const gateway = (name: string, port: number, range: { first: number; last: number }) =>
    // Local data-server workers, as s2cs runs by default (one per core, at most two here).
    start(spawnCli('s2cs', ['start', '--state-dir', join(state, name), '--control-host', '127.0.0.1', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--workers', String(Math.min(2, availableParallelism()))]));
  const gateways = [gateway('gw-a', prodPort, prodRange), gateway('gw-b', consPort, consRange)];
  await Promise.all(gateways.map((g) => g.waitFor(/s2cs ready/)));
  // Each gateway made a self-signed certificate; the clients trust exactly those two.
  const bundle = join(state, 'gateways.pem');
  writeFileSync(bundle, ['gw-a', 'gw-b'].map((g) => readFileSync(join(state, g, 'tls', 'cert.pem'), 'utf8')).join(''));
  const trust = ['--server-cert', bundle];

  say(`starting the producer application: ${numConn} listener(s), ${formatBytes(perConn)} each`);
  const listen = Array.from({ length: numConn }, () => '127.0.0.1:0').join(',');
  const producer = start(spawnCli('s2app', ['produce', '--listen', listen, '--bytes', String(perConn), '--count', String(numConn)]));
  const prodListeners = (await producer.waitFor(/producer listening on (\S+)/))[1]!;
  process.stdout.write(`producer listens on ${prodListeners}\n`);

  const uid = randomUUID();
  say(`s2uc request (uid ${uid}) while the producer's controller sends Hello`);
  const request = start(spawnCli('s2uc', [...trust, 'request', '--prod-s2cs', prodS2cs, '--cons-s2cs', consS2cs, '--num-conn', String(numConn), '--uid', uid, '--json']));
  const hello = start(spawnCli('s2app', ['hello', ...trust, '--s2cs', prodS2cs, '--uid', uid, '--role', 'PROD', '--listeners', prodListeners]));
  const [reqCode, helloCode] = await Promise.all([request.exited, hello.exited]);
  if (helloCode !== 0) throw new Error(`s2app hello failed: ${hello.stderr().trim()}`);
  if (reqCode !== 0) throw new Error(`s2uc request failed: ${request.stderr().trim()}`);
  const map = JSON.parse(request.stdout().trim().split('\n').at(-1)!) as { consListeners: string[]; prodListeners: string[]; prodAppListeners: string[] };
  process.stdout.write('connection map (consumer -> consumer gateway -> producer gateway -> producer):\n');
  map.consListeners.forEach((c, i) => process.stdout.write(`  ${c} -> ${map.prodListeners[i]} -> ${map.prodAppListeners[i % map.prodAppListeners.length]}\n`));

  say(`consumer: ${numConn} connection(s) through both gateways, verifying every byte`);
  const consumer = start(spawnCli('s2app', ['consume', '--connect', map.consListeners.join(','), '--bytes', String(perConn)], { inheritStderr: true }));
  const consCode = await consumer.exited;
  process.stdout.write(consumer.stdout());
  if (consCode !== 0) throw new Error('the consumer did not receive the verified data (see above)');

  say('releasing the stream on both gateways');
  const release = start(spawnCli('s2uc', [...trust, 'release', uid, '--s2cs', prodS2cs, '--s2cs', consS2cs]));
  if ((await release.exited) !== 0) throw new Error(`s2uc release failed: ${release.stderr().trim()}`);
  process.stdout.write(release.stdout());
  const producerCode = await producer.exited;
  if (producerCode !== 0) throw new Error(`the producer exited with ${producerCode}: ${producer.stderr().trim()}`);

  say('stopping the gateways');
  const codes = await Promise.all(gateways.map((g) => g.stop()));
  if (codes.some((c) => c !== 0)) throw new Error(`a gateway did not stop cleanly (exit codes ${codes.join(', ')})`);
  process.stdout.write('demo finished: data verified end to end (control over TLS, WAN leg encrypted with per-stream credentials)\n');
}

const program = new Command('demo')
  .description('two gateways, a producer and a consumer on loopback, driven through the real CLIs: streams and verifies --bytes through both gateways (run it with `npm run demo -- [options]`)')
  .addOption(
    // Default shown as written: parseSize's value (1073741824) means less to a reader.
    new Option('--bytes <size>', 'bytes to stream in total, split over the connections, e.g. 256MiB').argParser(option(parseSize)).default(parseSize('1GiB'), '1GiB'),
  )
  .option('--num-conn <n>', 'number of connections (listeners) for the stream', option(integer(1, 64)), 4)
  .action(async (f: DemoFlags) => {
    try {
      await main(f.bytes, f.numConn);
    } catch (err) {
      if (interrupted) return;
      // What each program printed, then the one error line (runCli).
      for (const p of running) {
        if (p.stderr().trim()) process.stderr.write(`--- ${p.name} stderr:\n${p.stderr().trim()}\n`);
      }
      await stopAll();
      throw err;
    }
    process.exit(0);
  });
addExamples(program, { '': ['npm run demo', 'npm run demo -- --bytes 256MiB --num-conn 2'] });

await runCli(program);
