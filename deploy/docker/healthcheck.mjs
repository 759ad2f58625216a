// The container's HEALTHCHECK: with SCISTREAM_METRICS_LISTEN (the --metrics-listen
// HOST:PORT given to s2cs), GET /healthz must answer 200 (503: s2cs cannot serve, e.g.
// no data-server agent is up). Without it, the control port must accept a connection.
// Exit 0 healthy, 1 not (Docker's convention).
import { connect } from 'node:net';

const TIMEOUT_MS = 4000;
const metrics = process.env.SCISTREAM_METRICS_LISTEN;

/** HOST:PORT as a local address to call: a wildcard bind is reached on loopback. */
function local(hostPort) {
  const i = hostPort.lastIndexOf(':');
  let host = hostPort.slice(0, i).replace(/^\[|\]$/g, '');
  if (host === '' || host === '0.0.0.0') host = '127.0.0.1';
  if (host === '::') host = '::1';
  return { host, port: Number(hostPort.slice(i + 1)) };
}

function fail(why) {
  console.error(`unhealthy: ${why}`);
  process.exit(1);
}

if (metrics) {
  const { host, port } = local(metrics);
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/healthz`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    const body = (await res.text()).trim();
    if (res.status !== 200) fail(`${url} answered ${res.status}: ${body}`);
    console.log(`healthy: ${url}: ${body}`);
  } catch (err) {
    fail(`${url}: ${err.message}`);
  }
} else {
  const port = Number(process.env.SCISTREAM_CONTROL_PORT ?? 5000);
  const s = connect({ host: '127.0.0.1', port });
  s.setTimeout(TIMEOUT_MS, () => fail(`control port 127.0.0.1:${port} did not answer`));
  s.once('connect', () => {
    s.destroy();
    console.log(`healthy: control port 127.0.0.1:${port} accepts connections`);
  });
  s.once('error', (err) => fail(`control port 127.0.0.1:${port}: ${err.message}`));
}
