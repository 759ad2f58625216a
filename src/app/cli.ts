// s2app: the application controller (hello) and the sample producer and
// consumer that the demo, tests and benchmarks stream with.
import { readFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { Command } from 'commander';
import { VERSION, addExamples, integer, onShutdown, option, runCli } from '../cli.js';
import { parseAddress, parseAddressList, formatAddress } from '../protocol/address.js';
import { validateRole } from '../protocol/validate.js';
import { parseSize, formatBytes, formatRate } from '../units.js';

const addressList = (field: string) => option((t: string) => parseAddressList(t, field));

const APP_SECRET_ENV = 'SCISTREAM_APP_SECRET';

/**
 * The secret in `file`, waiting up to `waitMs` for it to appear (s2uc writes it while its request is
 * under way). s2uc writes the file empty when the gateway issued no secret (it checks no tokens): then
 * the Hello carries none, so the same two commands work with and without tokens.
 */
async function readSecretFile(file: string, waitMs: number): Promise<string | undefined> {
  const until = Date.now() + waitMs;
  for (;;) {
    try {
      const secret = (await readFile(file, 'utf8')).trim();
      return secret === '' ? undefined : secret;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        if ((err as NodeJS.ErrnoException).code) throw new Error(`cannot read --app-secret-file ${file}: ${(err as NodeJS.ErrnoException).code}`);
        throw err;
      }
      if (Date.now() >= until) throw new Error(`--app-secret-file ${file} did not appear within the --timeout; start s2uc request --app-secret-file ${file} first`);
      // Short: s2uc writes the file the moment the gateway issues the secret, and the Hello waits on it.
      await delay(20);
    }
  }
}

const program = new Command('s2app')
  .description('SciStream application controller and sample producer/consumer')
  .version(VERSION, '-V, --version')
  .option('-v, --verbose', 'stack traces on errors');

program
  .command('hello')
  .description('PROD: tell s2cs where the producer listens; CONS: ask s2cs where the consumer connects')
  .requiredOption('--s2cs <host:port>', "this facility's s2cs", option((t: string) => formatAddress(parseAddress(t, '--s2cs'))))
  .requiredOption('--uid <uid>', 'the stream uid printed by s2uc request')
  .requiredOption('--role <PROD|CONS>', 'PROD for the producer, CONS for the consumer', option((t: string) => validateRole(t.toUpperCase(), '--role')))
  .option('--listeners <host:port,...>', "where the producer listens (PROD)", addressList('--listeners'))
  .option('--insecure', 'plain-text control channel (only with an s2cs started with --insecure)')
  .option('--client-cert <file>', 'PEM certificate to present to an s2cs that requires one (--client-ca)')
  .option('--client-key <file>', 'PEM private key of --client-cert')
  .option('--server-cert <file>', 'CA bundle or the server\'s own certificate (PEM); default: pin on first use')
  .option('--timeout <seconds>', 'how long to wait for the answer', option(integer(1, 86_400)), 200)
  .option('--app-secret <secret>', `the stream's application secret that s2uc request printed for this gateway (needed when s2cs checks tokens; or set ${APP_SECRET_ENV})`)
  .option('--app-secret-file <file>', 'read the application secret from this file (as written by s2uc request --app-secret-file); waits for it to appear')
  .option('--json', 'print one JSON object on stdout')
  .action(async (f: { s2cs: string; uid: string; role: 'PROD' | 'CONS'; listeners?: { host: string; port: number }[]; insecure?: boolean; serverCert?: string; clientCert?: string; clientKey?: string; timeout: number; appSecret?: string; appSecretFile?: string; json?: boolean }) => {
    if (f.role === 'PROD' && !f.listeners) throw new Error('a PROD Hello needs --listeners host:port[,...]: where the producer application listens');
    if (f.insecure) process.stderr.write('s2app: warning: --insecure: the control channel is plain text; anyone on the path can read and forge it\n');
    const appSecret = f.appSecret ?? (f.appSecretFile !== undefined ? await readSecretFile(f.appSecretFile, f.timeout * 1000) : process.env[APP_SECRET_ENV]);
    // The control client (gRPC, the protocol, TLS) is loaded by hello only.
    const { sendHello } = await import('./controller.js');
    const r = await sendHello(f.s2cs, f.uid, f.role, (f.listeners ?? []).map(formatAddress), {
      appSecret,
      insecure: f.insecure ?? false,
      deadlineMs: f.timeout * 1000,
      tls: { serverCert: f.serverCert, clientCert: f.clientCert, clientKey: f.clientKey, warn: (m) => process.stderr.write(`s2app: warning: ${m}\n`) },
    });
    if (f.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else if (f.role === 'CONS') process.stdout.write(`consumer connects to: ${r.listeners.join(',')}\n`);
    else process.stdout.write(`${r.message}\n`);
  });

program
  .command('produce')
  .description('serve deterministic data on each accepted connection')
  .requiredOption('--listen <host:port,...>', 'where to listen (port 0: any free port)', option((t: string) => parseAddressList(t, '--listen', { allowPortZero: true })))
  .requiredOption('--bytes <size>', 'bytes per connection, e.g. 256MiB', option(parseSize))
  .option('--seed <n>', 'pattern seed (the consumer must use the same)', option(integer(0, 2 ** 31 - 1)), 1)
  .option('--count <n>', 'exit after serving this many connections', option(integer(1, 1_000_000)))
  .action(async (f: { listen: { host: string; port: number }[]; bytes: number; seed: number; count?: number }) => {
    const { startProducer } = await import('./produce.js');
    const producer = await startProducer({ listen: f.listen, bytes: f.bytes, seed: f.seed, count: f.count });
    // Handler first: whoever waits for the listening line may signal at once.
    onShutdown(() => producer.close());
    process.stdout.write(`producer listening on ${producer.addresses.map(formatAddress).join(',')}\n`);
    if (f.count !== undefined) {
      await producer.done;
      await producer.close();
      process.stderr.write(`served ${producer.served} connection(s) of ${formatBytes(f.bytes)}\n`);
    }
  });

program
  .command('consume')
  .description('connect, receive and verify deterministic data; prints the throughput')
  .requiredOption('--connect <host:port,...>', 'where to connect, one connection each', addressList('--connect'))
  .requiredOption('--bytes <size>', 'bytes expected per connection, e.g. 256MiB', option(parseSize))
  .option('--seed <n>', 'pattern seed (as given to the producer)', option(integer(0, 2 ** 31 - 1)), 1)
  .option('--json', 'print one JSON object on stdout')
  .action(async (f: { connect: { host: string; port: number }[]; bytes: number; seed: number; json?: boolean }) => {
    const tty = process.stderr.isTTY && !f.json;
    const { consume } = await import('./consume.js');
    const r = await consume({
      connect: f.connect,
      bytes: f.bytes,
      seed: f.seed,
      onProgress: tty ? (got, total) => process.stderr.write(`\r${progressBar(got, total)}`) : undefined,
    });
    if (tty) process.stderr.write(`\r${progressBar(r.bytes, r.bytes)}\n`);
    if (f.json) {
      process.stdout.write(`${JSON.stringify({ ok: true, bytes: r.bytes, seconds: r.seconds, gbitPerSecond: (r.bytes * 8) / r.seconds / 1e9, connections: r.perConnection.length })}\n`);
    } else {
      process.stdout.write(`verified ${formatBytes(r.bytes)} over ${r.perConnection.length} connection(s) in ${r.seconds.toFixed(2)} s: ${formatRate(r.bytes, r.seconds)}\n`);
    }
  });

function progressBar(got: number, total: number): string {
  const width = 30;
  const frac = total > 0 ? Math.min(1, got / total) : 1;
  const filled = Math.round(frac * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(got)} / ${formatBytes(total)}`;
}

const UID = '4f0c1b5e-6a57-4c4e-9d3e-2b7f5c1a9e10';
addExamples(program, {
  '': [
    `s2app hello --s2cs gw-a.example.org:5000 --uid ${UID} --role PROD --listeners 10.0.0.5:5074,10.0.0.5:5075`,
    's2app produce --listen 127.0.0.1:0,127.0.0.1:0 --bytes 256MiB',
  ],
  hello: [
    `s2app hello --s2cs gw-a.example.org:5000 --uid ${UID} --role PROD --listeners 10.0.0.5:5074,10.0.0.5:5075 --app-secret-file prod.secret`,
    `s2app hello --s2cs gw-b.example.org:5000 --uid ${UID} --role CONS --json`,
  ],
  produce: ['s2app produce --listen 127.0.0.1:5074,127.0.0.1:5075 --bytes 256MiB --count 2'],
  consume: ['s2app consume --connect 127.0.0.1:5100,127.0.0.1:5101 --bytes 256MiB'],
});

await runCli(program);
