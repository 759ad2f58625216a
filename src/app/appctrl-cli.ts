// appctrl: the Python reference's application controller CLI, kept for its users'
// command lines (`appctrl mock UID S2CS TOKEN ROLE [CONTROLLER_IP]`,
// `appctrl create-appctrl ...`). New setups use `s2app hello`.
import { existsSync } from 'node:fs';
import { Command } from 'commander';
import { UsageError, VERSION, addExamples, integer, option, runCli } from '../cli.js';
import { formatAddress, parseAddress } from '../protocol/address.js';
import type { HelloOptions } from './controller.js';

const say = (line: string) => process.stderr.write(`appctrl: ${line}\n`);

interface TlsFlags {
  insecure?: boolean;
  serverCert?: string;
  clientCert?: string;
  clientKey?: string;
  timeout: number;
}

const program = new Command('appctrl')
  .description("the Python reference's application controller: sends its Hello (and, with create-appctrl, starts its iperf3 application); new setups use s2app hello")
  .version(VERSION, '-V, --version')
  .option('--insecure', 'plain-text control channel (only with an s2cs started with --insecure)')
  .option('--server-cert <file>', "CA bundle or the server's own certificate (PEM); default: ./server.crt when it exists (as the reference), else pin on first use")
  .option('--client-cert <file>', 'PEM certificate to present to an s2cs that requires one (--client-ca)')
  .option('--client-key <file>', 'PEM private key of --client-cert')
  .option('--timeout <seconds>', 'how long a Hello may wait for the stream to be requested', option(integer(1, 86_400)), 200)
  .option('-v, --verbose', 'stack traces on errors');

/** Our TLS options, as s2app's; without --server-cert the reference's ./server.crt is trusted when present. */
function connection(): Omit<HelloOptions, 'appSecret' | 'ownerToken'> {
  const g = program.opts<TlsFlags>();
  let serverCert = g.serverCert;
  if (g.insecure) say('warning: --insecure: the control channel is plain text; anyone on the path can read and forge it');
  else if (serverCert === undefined && existsSync('server.crt')) {
    serverCert = 'server.crt';
    say('note: trusting ./server.crt, as the reference did; pass --server-cert FILE to choose another');
  }
  return {
    insecure: g.insecure ?? false,
    deadlineMs: g.timeout * 1000,
    tls: { serverCert, clientCert: g.clientCert, clientKey: g.clientKey, warn: (m) => say(`warning: ${m}`) },
  };
}

/** The reference's five positional arguments (S2CS and CONTROLLER_IP with its defaults). */
function helloArguments(cmd: Command): Command {
  return cmd
    .argument('<uid>', 'the stream uid (printed by s2uc)')
    .argument('<s2cs>', "this facility's s2cs, host:port (the reference's default localhost:5000 cannot be kept: TOKEN and ROLE follow it)")
    .argument('<token>', 'the application secret s2uc printed for this Hello (or, for a reference gateway, an access token)')
    .argument('<role>', 'PROD or CONS')
    .argument('[controller_ip]', 'PROD: the producer host; the Hello names it at ports 5074,5075,5076,37000,47000', '127.0.0.1');
}

async function hello(uid: string, s2cs: string, token: string, role: string, controllerIp: string) {
  const { checkToken, parseRole, referenceHello, referenceProdListeners } = await import('./appctrl.js');
  let r: 'PROD' | 'CONS';
  try {
    checkToken(token);
    r = parseRole(role);
    if (r === 'PROD') referenceProdListeners(controllerIp);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const server = formatAddress(parseAddress(s2cs, 'S2CS'));
  process.stdout.write('AppCtrl: SENDING HELLO\n');
  const result = await referenceHello({ uid, s2cs: server, token, role: r, controllerIp }, connection(), (l) => say(`warning: ${l}`));
  process.stdout.write('AppCtrl: Hello sent\n');
  if (r === 'CONS') process.stdout.write(`consumer connects to: ${result.listeners.join(',')}\n`);
  else if (result.message) process.stdout.write(`${result.message}\n`);
  return result;
}

helloArguments(program.command('mock').description("send the reference controller's Hello and print the answer; no application is started")).action(
  async (uid: string, s2cs: string, token: string, role: string, controllerIp: string) => {
    await hello(uid, s2cs, token, role, controllerIp);
    process.stdout.write('Created AppCtrl instance\n');
  },
);

const port = option(integer(1, 65535));
const seconds = (max: number) => option(integer(0, max));

helloArguments(
  program
    .command('create-appctrl')
    .description("send the reference controller's Hello, then start its application: PROD an iperf3 server (port 7000), CONS an iperf3 client (-R) to the first listener the Hello answered; both run on after appctrl exits")
    .option('--app-port <port>', 'PROD: the iperf3 server port (the reference: 7000)', port, 7000)
    .option('--delay <seconds>', 'CONS: wait this long before the iperf3 client starts (the reference: 10)', seconds(3600), 10)
    .option('--time <seconds>', 'CONS: iperf3 -t (the reference: 10)', seconds(86_400), 10),
).action(async (uid: string, s2cs: string, token: string, role: string, controllerIp: string, f: { appPort: number; delay: number; time: number }) => {
  const result = await hello(uid, s2cs, token, role, controllerIp);
  const { startIperfClient, startIperfServer } = await import('./iperf.js');
  if (result.role === 'PROD') {
    const started = await startIperfServer(f.appPort);
    if (f.appPort !== 5074) say(`note: the iperf3 server listens on ${f.appPort} while the Hello names ${controllerIp} at 5074,5075,5076,37000,47000 (as the reference's): data reaches it only through a stream whose targets include port ${f.appPort}`);
    process.stdout.write(`Started iperf server on port ${f.appPort} (pid ${started.pid}, output in ${started.output})\n${started.command}\n`);
  } else {
    const target = result.listeners[0];
    if (!target) throw new Error('the gateway answered the CONS Hello with no listeners; nothing to connect the iperf3 client to');
    const started = await startIperfClient(target, { delayS: f.delay, seconds: f.time });
    process.stdout.write(`iperf client started with pid: ${started.pid} (in ${f.delay} s, output in ${started.output})\n${started.command}\n`);
  }
  process.stdout.write('Created IperfCtrl instance\n');
});

program
  .command('iperf-server')
  .description("the reference's iperf3 server: iperf3 -s -p PORT in the background, output in server_output.txt")
  .argument('[port]', 'port', '7000')
  .action(async (p: string) => {
    const { startIperfServer } = await import('./iperf.js');
    const started = await startIperfServer(port(p));
    process.stdout.write(`Started iperf server on port ${p} (pid ${started.pid})\n${started.command}\n`);
  });

program
  .command('iperf-client')
  .description("the reference's iperf3 client: iperf3 -t 10 -c HOST -p PORT -R after 10 s in the background, output in client_output.txt")
  .argument('[target]', 'host:port', '127.0.0.1:7000')
  .option('--delay <seconds>', 'wait this long first (the reference: 10)', seconds(3600), 10)
  .option('--time <seconds>', 'iperf3 -t (the reference: 10)', seconds(86_400), 10)
  .action(async (target: string, f: { delay: number; time: number }) => {
    const { startIperfClient } = await import('./iperf.js');
    const started = await startIperfClient(target, { delayS: f.delay, seconds: f.time });
    process.stdout.write(`iperf client started with pid: ${started.pid}\n${started.command}\n`);
  });

// The reference's ZeroMQ sample applications: not kept (no ZeroMQ here); ours stream and verify.
for (const [name, instead] of [
  ['subscribe', 's2app consume --connect HOST:PORT --bytes SIZE'],
  ['run-producer', 's2app produce --listen HOST:PORT --bytes SIZE'],
] as const) {
  program
    .command(name)
    .description(`the reference's ZeroMQ sample application is not kept; use: ${instead}`)
    .argument('[arg]')
    .action(() => {
      throw new UsageError(`${name}: the reference's ZeroMQ sample application is not kept; use: ${instead}`);
    });
}

const UID = '4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3';
addExamples(program, {
  '': [`appctrl mock ${UID} localhost:5000 TOKEN PROD 10.0.0.1`, `appctrl create-appctrl ${UID} gw-b.example.org:5000 APP_SECRET CONS`],
  mock: [`appctrl mock ${UID} localhost:5000 TOKEN PROD 10.0.0.1`, `appctrl --server-cert gateway.pem mock ${UID} gw-b.example.org:5000 APP_SECRET CONS`],
  'create-appctrl': [`appctrl create-appctrl ${UID} gw-a.example.org:5000 APP_SECRET PROD 10.0.0.5`, `appctrl create-appctrl ${UID} gw-b.example.org:5000 APP_SECRET CONS --delay 0`],
  'iperf-server': ['appctrl iperf-server 7000'],
  'iperf-client': ['appctrl iperf-client 10.0.0.5:5100 --delay 0'],
  subscribe: ['appctrl subscribe 127.0.0.1:7000    # says what to use instead'],
  'run-producer': ['appctrl run-producer 7000    # says what to use instead'],
});

await runCli(program);
