// Why a control connection failed, from what a short probe finds, not from a guess:
// nothing listens (refused), no answer at all (no TCP connection: a firewall dropping
// packets or a wrong address), or a certificate the client does not trust.
// Probes run only after a call failed, never on the success path.
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { parseAddress } from './address.js';
import { clientName } from '../security/client-name.js';

/** Longest a probe waits for TCP to complete. */
export const PROBE_TIMEOUT_MS = 3000;

export type Finding =
  | { kind: 'refused' }
  | { kind: 'no-answer'; waitedMs: number }
  | { kind: 'untrusted'; subject: string; fingerprint: string; reason: string };

export type TcpReach = 'connected' | 'refused' | 'no-answer' | 'other';

/** Whether TCP to `server` completes, is refused, or gets no answer within `timeoutMs`. Sends nothing. */
export function probeTcp(server: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<TcpReach> {
  const { host, port } = parseAddress(server, 's2cs address');
  return new Promise((resolve) => {
    const s = netConnect({ host, port });
    const done = (reach: TcpReach) => {
      clearTimeout(timer);
      s.destroy();
      resolve(reach);
    };
    const timer = setTimeout(() => done('no-answer'), timeoutMs);
    s.once('connect', () => done('connected'));
    s.once('error', (err: NodeJS.ErrnoException) =>
      done(err.code === 'ECONNREFUSED' ? 'refused' : err.code === 'ETIMEDOUT' || err.code === 'EHOSTUNREACH' ? 'no-answer' : 'other'),
    );
  });
}

// OpenSSL's and Node's words for a server certificate the client could not verify (not a
// client certificate the server refused, nor a pinned certificate that changed: those say so).
const UNTRUSTED = /self.signed certificate( in certificate chain)?|unable to verify the first certificate|unable to get (local )?issuer certificate|certificate has expired|certificate is not yet valid|Hostname\/IP does not match certificate's altnames/i;

export function untrustedCertificate(details: string): boolean {
  return UNTRUSTED.test(details);
}

/** The certificate `server` presents (read only, never trusted): subject and SHA-256 fingerprint. */
export function peerCertificate(server: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<{ subject: string; fingerprint: string } | undefined> {
  const { host, port } = parseAddress(server, 's2cs address');
  return new Promise((resolve) => {
    const s = tlsConnect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['h2'] });
    const done = (found?: { subject: string; fingerprint: string }) => {
      clearTimeout(timer);
      s.destroy();
      resolve(found);
    };
    const timer = setTimeout(() => done(), timeoutMs);
    s.once('secureConnect', () => {
      const cert = s.getPeerX509Certificate();
      done(cert ? { subject: cert.subject.replace(/\n/g, ', '), fingerprint: cert.fingerprint256 } : undefined);
    });
    s.once('error', () => done());
  });
}

/**
 * What probing `server` after a failed call found, when it explains the failure;
 * undefined when TCP connects and the certificate (if any) is not the cause.
 */
export async function diagnose(server: string, details: string, tls: boolean): Promise<Finding | undefined> {
  if (tls && untrustedCertificate(details)) {
    const cert = await peerCertificate(server);
    if (cert) return { kind: 'untrusted', ...cert, reason: certificateReason(details) };
  }
  const start = Date.now();
  const reach = await probeTcp(server);
  if (reach === 'refused') return { kind: 'refused' };
  if (reach === 'no-answer') return { kind: 'no-answer', waitedMs: Date.now() - start };
  return undefined;
}

function certificateReason(details: string): string {
  return UNTRUSTED.exec(details)?.[0] ?? 'certificate not trusted';
}

/**
 * One line naming the cause found and what to do next. `why`: the failure as the transport
 * put it (tidied), kept in parentheses. Unreachable causes keep the "cannot reach" lead.
 */
export function explain(server: string, rpc: string, f: Finding, why: string): string {
  switch (f.kind) {
    case 'refused':
      return refused(server, rpc, why);
    case 'no-answer':
      return noAnswer(server, f.waitedMs, rpc);
    case 'untrusted':
      return (
        `s2cs at ${server} presented a certificate ${clientName()} does not trust (${f.reason}): subject ${f.subject}, SHA-256 fingerprint ${f.fingerprint}; ` +
        `if that is the fingerprint s2cs printed at start, pass --server-cert with that certificate (s2cs's tls/cert.pem) or its CA, ` +
        `or leave --server-cert out to pin it on first use (kept in ~/.scistream/known_servers)`
      );
  }
}

function lead(server: string, rpc?: string): string {
  return `cannot reach s2cs at ${server}${rpc ? ` for ${rpc}` : ''}`;
}

/** No TCP connection at all: packets dropped on the way, or nobody at that address. */
export function noAnswer(server: string, waitedMs: number, rpc?: string): string {
  return (
    `${lead(server, rpc)}: no answer at all, the TCP connection was not established within ${(waitedMs / 1000).toFixed(1)} s; ` +
    `a firewall drops packets to that port, or the address is wrong; check the address, and that the control port is open from here`
  );
}

/** ECONNREFUSED said as a cause. */
export function refused(server: string, rpc?: string, why = 'connection refused'): string {
  return `${lead(server, rpc)} (${why}); nothing listens there (connection refused): s2cs is not running there or the port is wrong; start s2cs, or check the address and port`;
}
