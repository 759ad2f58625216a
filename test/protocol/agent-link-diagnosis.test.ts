// Why s2cs cannot reach a data-server agent over TCP, said from what answers at its
// address (a real s2ds process, a real HTTP server): nothing listens, an agent whose
// certificate s2cs does not trust (subject, fingerprint, --s2ds-cert), an agent that does
// not accept s2cs's certificate, something that is not an agent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { agentLinkCause } from '../../src/protocol/diagnose.js';
import { startAgentProcess } from '../support/agent.js';

async function closedPort(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return `127.0.0.1:${port}`;
}

test('an agent link failure names what answers at the agent address', { timeout: 60_000 }, async (t) => {
  const nothing = await closedPort();
  const refused = await agentLinkCause(nothing, 'No connection established. Last error: Error: connect ECONNREFUSED');
  t.diagnostic(refused);
  assert.match(refused, /^nothing listens at 127\.0\.0\.1:\d+ \(connection refused\): s2ds is not running there/);

  const agent = await startAgentProcess({ tcp: true });
  try {
    // s2cs with another --s2ds-cert: OpenSSL's words, then the agent's certificate named.
    const untrusted = await agentLinkCause(agent.address, 'No connection established. Last error: Error: self-signed certificate. Resolution note: ');
    t.diagnostic(untrusted);
    const fingerprint = new X509Certificate(agent.agentCert!).fingerprint256;
    assert.match(untrusted, /presented a certificate s2cs does not trust \(self-signed certificate\): subject CN=/);
    assert.ok(untrusted.includes(fingerprint), untrusted);
    assert.match(untrusted, /--s2ds-cert/);
    // The agent does not take s2cs's certificate: gRPC only says it failed to connect; the
    // agent's alert to a probe without a certificate tells.
    const notAccepted = await agentLinkCause(agent.address, 'No connection established. Last error: Failed to connect');
    t.diagnostic(notAccepted);
    assert.match(notAccepted, /answers TLS but the link failed: it refused s2cs's certificate; give the agent \(s2ds start --s2cs-cert\)/);
  } finally {
    await agent.close();
  }

  const http = createHttpServer((_q, res) => res.end('hello'));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  try {
    const other = await agentLinkCause(`127.0.0.1:${(http.address() as { port: number }).port}`, 'wrong version number');
    t.diagnostic(other);
    assert.match(other, /something that is not a data-server agent answers at 127\.0\.0\.1:\d+: an HTTP\/1 server, it answered "HTTP\/1\.1 400 Bad Request"; check --s2ds/);
  } finally {
    http.closeAllConnections();
    await new Promise<void>((r) => http.close(() => r()));
  }
});
