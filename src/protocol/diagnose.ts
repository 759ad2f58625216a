// Why a control connection (or s2cs's link to a data-server agent) failed, from what short
// probes find, not from a guess: nothing listens (refused), no answer at all (no TCP
// connection: a firewall dropping packets or a wrong address), a certificate the client does
// not trust, TLS against plain text or the reverse, or something that is not a gRPC server
// (named by what it answered). Probes run only after a call failed, never on the success path;
// each reads at most a few hundred bytes within a few seconds.
import { connect as netConnect, isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { parseAddress } from './address.js';
import { clientName } from '../security/client-name.js';

/** Longest a probe waits for TCP to complete. */
export const PROBE_TIMEOUT_MS = 3000;

export type Finding =
  | { kind: 'refused' }
  | { kind: 'no-answer'; waitedMs: number }
  | { kind: 'untrusted'; subject: string; fingerprint: string; reason: string }
  /** s2cs's kind of server, with the other setting of TLS than the client's. */
  | { kind: 'mismatch'; answered: 'plain' | 'tls' }
  /** Something answers, but not as a gRPC server does (HTTP/2, over TLS or not). */
  | { kind: 'not-s2cs'; what: string }
  /** TCP connects, and nothing comes back to a TLS handshake or to HTTP/2's preface. */
  | { kind: 'silent'; waitedMs: number }
  /** TCP connects but closes or resets before anything can be told. */
  | { kind: 'dropped' }
  /** The server requires a client certificate (mutual TLS) and refused the client's, or got none. */
  | { kind: 'client-cert'; presented: boolean };

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
    s.once('error', (err: NodeJS.ErrnoException) => done(reachOf(err)));
  });
}

function reachOf(err: NodeJS.ErrnoException): TcpReach {
  if (err.code === 'ECONNREFUSED') return 'refused';
  return err.code === 'ETIMEDOUT' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH' ? 'no-answer' : 'other';
}

/** How long a probe waits for the first bytes of an answer once TCP connected. */
const ANSWER_WAIT_MS = 1500;

// HTTP/2's client preface and an empty SETTINGS frame: what a plain-text gRPC client sends first.
const H2_PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);

type PlainAnswer = { kind: 'h2' } | { kind: 'tls' } | { kind: 'bytes'; data: Buffer } | { kind: 'nothing' } | { kind: 'tcp'; reach: TcpReach; waitedMs: number };

/** Opens TCP, sends HTTP/2's preface and reads what comes back first. */
function plainProbe(host: string, port: number): Promise<PlainAnswer> {
  const started = Date.now();
  return new Promise((resolve) => {
    const s = netConnect({ host, port });
    let data = Buffer.alloc(0);
    let connected = false;
    const done = (a: PlainAnswer) => {
      clearTimeout(timer);
      s.destroy();
      resolve(a);
    };
    const settle = () => {
      if (!connected) return done({ kind: 'tcp', reach: 'no-answer', waitedMs: Date.now() - started });
      if (data.length === 0) return done({ kind: 'nothing' });
      // A TLS record (handshake or alert) in answer to bytes that are not a ClientHello.
      if ((data[0] === 0x15 || data[0] === 0x16) && data[1] === 0x03) return done({ kind: 'tls' });
      // A frame header: 3 bytes of length, then type 4 (SETTINGS): an HTTP/2 server.
      if (data.length >= 9 && data[3] === 4) return done({ kind: 'h2' });
      done({ kind: 'bytes', data });
    };
    let timer = setTimeout(settle, PROBE_TIMEOUT_MS);
    s.once('connect', () => {
      connected = true;
      clearTimeout(timer);
      timer = setTimeout(settle, ANSWER_WAIT_MS);
      s.write(H2_PREFACE);
    });
    s.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]).subarray(0, 256);
      if (data.length >= 64 || (data.length >= 9 && data[3] === 4)) settle();
    });
    s.once('end', settle);
    s.once('error', (err: NodeJS.ErrnoException) => {
      if (!connected) done({ kind: 'tcp', reach: reachOf(err), waitedMs: Date.now() - started });
      else settle();
    });
  });
}

type TlsAnswer = { kind: 'h2' } | { kind: 'other'; alpn: string | false } | { kind: 'failed'; code: string } | { kind: 'nothing' };

/** A TLS handshake offering only h2 (as gRPC does), read only, never trusted. */
function tlsProbe(host: string, port: number): Promise<TlsAnswer> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['h2'], servername: isIP(host) ? undefined : host });
    const done = (a: TlsAnswer) => {
      clearTimeout(timer);
      s.destroy();
      resolve(a);
    };
    const timer = setTimeout(() => done({ kind: 'nothing' }), PROBE_TIMEOUT_MS);
    s.once('secureConnect', () => done(s.alpnProtocol === 'h2' ? { kind: 'h2' } : { kind: 'other', alpn: s.alpnProtocol ?? false }));
    s.once('error', (err: NodeJS.ErrnoException) => done({ kind: 'failed', code: `${err.code ?? ''} ${err.message}` }));
  });
}

/**
 * What answers at `server`, asked after a call failed: nothing (refused, no answer), a
 * gRPC server with or without TLS, something else (named by what it sent), or a silent one.
 * `tls`: whether the client spoke TLS.
 */
export async function identify(server: string, tls: boolean): Promise<Finding | undefined> {
  const { host, port } = parseAddress(server, 's2cs address');
  const plain = await plainProbe(host, port);
  if (plain.kind === 'tcp') {
    if (plain.reach === 'refused') return { kind: 'refused' };
    if (plain.reach === 'no-answer') return { kind: 'no-answer', waitedMs: plain.waitedMs };
    return undefined;
  }
  // A gRPC server with the client's own setting of TLS: the cause is not the connection (undefined).
  if (plain.kind === 'h2') return tls ? { kind: 'mismatch', answered: 'plain' } : undefined;
  if (plain.kind === 'bytes') return { kind: 'not-s2cs', what: whatAnswered(plain.data) };
  const started = Date.now();
  const secure = await tlsProbe(host, port);
  if (secure.kind === 'h2') return tls ? undefined : { kind: 'mismatch', answered: 'tls' };
  if (secure.kind === 'other') {
    return { kind: 'not-s2cs', what: notH2(secure.alpn) };
  }
  if (secure.kind === 'failed' && /no.application.protocol/i.test(secure.code)) {
    return { kind: 'not-s2cs', what: 'a TLS server that does not speak HTTP/2, it refused h2, the protocol gRPC needs' };
  }
  if (plain.kind === 'nothing' && secure.kind === 'nothing') return { kind: 'silent', waitedMs: ANSWER_WAIT_MS + (Date.now() - started) };
  if (plain.kind === 'tls') return { kind: 'not-s2cs', what: 'a TLS server whose handshake failed' };
  return { kind: 'dropped' };
}

/** A TLS server that chose another application protocol than h2, or none. */
export function notH2(alpn: string | false): string {
  return `a TLS server that does not speak HTTP/2, ${alpn ? `it chose ${alpn}` : 'it chose no application protocol'}`;
}

/** A few words on what a non-gRPC server sent, printable and short. */
function whatAnswered(data: Buffer): string {
  if (data.subarray(0, 16).equals(H2_PREFACE.subarray(0, Math.min(16, data.length)))) return 'an echo service, it sent back what it was sent';
  const text = data.toString('latin1');
  const line = text.split(/\r?\n/)[0]!.replace(/[^\x20-\x7e]/g, '?').slice(0, 60);
  if (/^HTTP\/1\.[01] /.test(text)) return `an HTTP/1 server, it answered "${line}"`;
  const printable = [...data.subarray(0, 32)].filter((b) => b >= 0x20 && b < 0x7f).length;
  return printable >= Math.min(16, data.length) * 0.8 ? `a server that sent "${line}"` : `a server that sent ${data.length} bytes that are not HTTP/2 (${data.subarray(0, 8).toString('hex')}...)`;
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
 * undefined when a gRPC server answers with the client's setting of TLS and the
 * certificate (if any) is not the cause. `tls`: whether the client spoke TLS.
 */
export async function diagnose(server: string, details: string, tls: boolean, presentsCert = false): Promise<Finding | undefined> {
  if (tls && untrustedCertificate(details)) {
    const cert = await peerCertificate(server);
    if (cert) return { kind: 'untrusted', ...cert, reason: certificateReason(details) };
  }
  const found = await identify(server, tls);
  if (found || !tls) return found;
  // A TLS gRPC server answers, yet the call failed: one that requires client certificates
  // says so in an alert (TLS 1.3 sends it after the handshake; grpc-js may only say "Failed to connect").
  if (CLIENT_CERT_REFUSED.test(details) || (await requiresClientCertificate(server))) return { kind: 'client-cert', presented: presentsCert };
  return undefined;
}

/** Whether `server` ends a TLS connection that presents no certificate with an alert asking for one. */
export function requiresClientCertificate(server: string): Promise<boolean> {
  const { host, port } = parseAddress(server, 's2cs address');
  return new Promise((resolve) => {
    const s = tlsConnect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['h2'], servername: isIP(host) ? undefined : host });
    const done = (yes: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(yes);
    };
    let timer = setTimeout(() => done(false), PROBE_TIMEOUT_MS);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      timer = setTimeout(() => done(false), ANSWER_WAIT_MS);
      s.resume();
    });
    s.once('error', (err: Error) => done(CLIENT_CERT_REFUSED.test(err.message)));
  });
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
    case 'mismatch':
      return controlMismatch(server, f.answered);
    case 'not-s2cs':
      return notS2cs(server, f.what, rpc);
    case 'silent':
      return (
        `${lead(server, rpc)}: something accepted the TCP connection but answered neither TLS nor HTTP/2 within ${(f.waitedMs / 1000).toFixed(1)} s; ` +
        `it is not s2cs, or an s2cs that is stuck; check the address and port, and the log of s2cs there`
      );
    case 'client-cert':
      return f.presented
        ? `s2cs at ${server} refused the client certificate ${clientName()} presented (--client-cert): it accepts only certificates its --client-ca issued; give --client-cert and --client-key with one that CA issued`
        : `s2cs at ${server} requires a client certificate (it was started with --client-ca) and ${clientName()} presented none; give --client-cert and --client-key with a certificate that CA issued`;
    case 'dropped':
      return (
        `${lead(server, rpc)} (${why}): something accepted the TCP connection and closed it without answering TLS or HTTP/2; ` +
        `it is not s2cs, or something on the way (a proxy, a firewall) cuts the connection; check the address and port`
      );
  }
}

/** A server that is not a gRPC one answers at the address. */
export function notS2cs(server: string, what: string, rpc?: string): string {
  return `${lead(server, rpc)}: something that is not s2cs answers there: ${what}; check the address and port (s2cs's control port is 5000 unless it was started with --port)`;
}

/**
 * OpenSSL's words for a TLS client reading a plain-text answer (an HTTP/2 server's
 * GOAWAY or SETTINGS frame read as a TLS record).
 */
export function answeredInPlainText(text: string): boolean {
  return /wrong.version.number|packet.length.too.long|http.request|unknown.protocol/i.test(text);
}

/** One line saying which side runs without TLS and what to change. */
export function controlMismatch(server: string, answered: 'plain' | 'tls'): string {
  return answered === 'plain'
    ? `s2cs at ${server} answered in plain text: it was started with --insecure; pass --insecure to ${clientName()} too (or start s2cs with TLS)`
    : `s2cs at ${server} answered with TLS: it was started without --insecure; drop --insecure from ${clientName()} (or start s2cs with --insecure too)`;
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

// TLS alerts by which a server refuses the client's certificate.
const CLIENT_CERT_REFUSED = /certificate.required|unknown.ca|bad.certificate|certificate.unknown|handshake.failure/i;

/**
 * Why s2cs cannot reach a data-server agent over its TCP link (mutual TLS, gRPC), from
 * the same probes: one line naming the cause and what to do. `details`: the failure as
 * gRPC put it. Run once when an agent is marked down, never on the success path.
 */
export async function agentLinkCause(address: string, details: string): Promise<string> {
  const agent = `the data-server agent at ${address}`;
  const finding = await diagnose(address, details, true, true);
  if (!finding || finding.kind === 'client-cert') {
    // Without the alert's words, a link that fails after TLS with h2 answered most likely is that too.
    const sure = finding !== undefined;
    return (
      `${agent} answers TLS but the link failed: ${sure ? 'it refused' : 'most likely it does not accept'} s2cs's certificate; ` +
      `give the agent (s2ds start --s2cs-cert) s2cs's control certificate (s2cs's tls/cert.pem) or the CA that issued it`
    );
  }
  switch (finding.kind) {
    case 'refused':
      return `nothing listens at ${address} (connection refused): s2ds is not running there, or the address or port is wrong (s2ds start --listen); start s2ds, or fix --s2ds`;
    case 'no-answer':
      return `no answer at all from ${address}: the TCP connection was not established within ${(finding.waitedMs / 1000).toFixed(1)} s; a firewall drops packets to that port, or the address is wrong`;
    case 'untrusted':
      return (
        `${agent} presented a certificate s2cs does not trust (${finding.reason}): subject ${finding.subject}, SHA-256 fingerprint ${finding.fingerprint}; ` +
        `if that is the fingerprint s2ds printed at start, give s2cs that certificate (the agent's tls/cert.pem) or its CA with --s2ds-cert`
      );
    case 'mismatch':
      return `something that is not a data-server agent answers at ${address}: a plain-text HTTP/2 server (an s2cs started with --insecure?); agents always speak TLS: check --s2ds`;
    case 'not-s2cs':
      return `something that is not a data-server agent answers at ${address}: ${finding.what}; check --s2ds (the address s2ds start --listen gives)`;
    case 'silent':
      return `something at ${address} accepted the TCP connection but answered neither TLS nor HTTP/2 within ${(finding.waitedMs / 1000).toFixed(1)} s; it is not an s2ds agent, or one that is stuck: check --s2ds and the agent's log`;
    case 'dropped':
      return `something at ${address} accepted the TCP connection and closed it without answering TLS or HTTP/2: not an s2ds agent, or something on the way cuts the connection; check --s2ds`;
  }
}

/** grpc-js's connection failure text without its scaffolding: `connect ECONNREFUSED 127.0.0.1:5000`. */
export function tidyDetails(details: string): string {
  const text = details
    .replace(/No connection established\.\s*/i, '')
    .replace(/Last error:\s*/i, '')
    .replace(/\bError:\s*/g, '')
    .replace(/\s*\(\d{4}-\d\d-\d\dT[0-9:.]+Z\)/g, '')
    .replace(/\.?\s*Resolution note:\s*\)?\s*$/i, '')
    .replace(/\s+/g, ' ')
    .trim();
  return text || details.trim();
}
