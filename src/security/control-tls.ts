// TLS for the control channel (gRPC): the server's certificate (given, or made
// once and kept in the state directory), and how clients trust it: a CA bundle
// or the server's own certificate (--server-cert), else pinning on first use in
// known_servers, like ssh's known_hosts.
import * as grpc from '@grpc/grpc-js';
import { mkdirSync, readFileSync, writeFileSync, existsSync, appendFileSync, chmodSync, rmSync } from 'node:fs';
import { hostname, homedir, networkInterfaces } from 'node:os';
import { join, dirname } from 'node:path';
import { checkServerIdentity, connect as tlsConnect } from 'node:tls';
import { createHash, randomBytes } from 'node:crypto';
import { createSelfSigned, fingerprint } from './certificates.js';
import { parseAddress } from '../protocol/address.js';
import { explain, identify, notH2, notS2cs } from '../protocol/diagnose.js';
import { loadKeyPair } from './pem-files.js';
import { stateDirProblem } from './state-dir.js';

export function scistreamHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.SCISTREAM_HOME || join(homedir(), '.scistream');
}

export interface ServerTls {
  cert: string;
  key: string;
  fingerprint: string;
  /** Set when the certificate was made now. */
  created?: string;
  /** What start-up should warn about (a private key others may read). */
  warnings?: string[];
}

export interface ServerTlsFiles {
  certFile?: string;
  keyFile?: string;
  stateDir: string;
  names: string[];
  program?: string;
}

/** The server's certificate: from --tls-cert/--tls-key, or self-signed under stateDir (made on first start, reused after). */
export async function loadServerTls(opts: ServerTlsFiles): Promise<ServerTls> {
  return existingServerTls(opts) ?? (await makeServerTls(opts));
}

/**
 * The certificate and key loadServerTls would use, read and checked (readable, PEM, the
 * key the certificate's); undefined when it would make a self-signed pair. Opens nothing
 * for writing (check-config).
 */
export function existingServerTls(opts: ServerTlsFiles): ServerTls | undefined {
  if (opts.certFile || opts.keyFile) {
    if (!opts.certFile || !opts.keyFile) throw new Error('give both --tls-cert and --tls-key');
    const pair = loadKeyPair({
      certFile: opts.certFile,
      keyFile: opts.keyFile,
      certWhat: `--tls-cert ${opts.certFile}`,
      keyWhat: `--tls-key ${opts.keyFile}`,
      fix: 'give a PEM certificate with --tls-cert and the unencrypted PEM private key that belongs to it with --tls-key',
    });
    return { cert: pair.cert, key: pair.key, fingerprint: fingerprint(pair.cert), warnings: pair.warnings };
  }
  const dir = join(opts.stateDir, 'tls');
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  if (existsSync(certFile) || existsSync(keyFile)) {
    const pair = loadKeyPair({
      certFile,
      keyFile,
      certWhat: `the state dir's certificate ${certFile}`,
      keyWhat: `the state dir's private key ${keyFile}`,
      fix:
        `remove ${certFile} and ${keyFile} and start again to make a new self-signed pair ` +
        `(clients that pinned the old certificate must then remove its line from their known_servers), or give --tls-cert and --tls-key`,
    });
    return { cert: pair.cert, key: pair.key, fingerprint: fingerprint(pair.cert), warnings: pair.warnings };
  }
  return undefined;
}

/** A self-signed pair, made now and kept in the state dir's tls/ (mode 700, the key 600). */
async function makeServerTls(opts: ServerTlsFiles): Promise<ServerTls> {
  const dir = join(opts.stateDir, 'tls');
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const names = [...new Set(['localhost', '127.0.0.1', '::1', hostname(), ...localAddresses(), ...opts.names])];
  // A unique subject: verifiers look issuers up by name, so two gateways' certificates in one bundle must not share it.
  const made = await createSelfSigned({ commonName: `${opts.program ?? 's2cs'} ${hostname()} ${randomBytes(6).toString('hex')}`, names, validDays: 3650 });
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(keyFile, made.key, { mode: 0o600 });
    writeFileSync(certFile, made.cert, { mode: 0o644 });
  } catch (err) {
    // Half a pair would fail the next start: leave none.
    rmSync(keyFile, { force: true });
    rmSync(certFile, { force: true });
    throw new Error(`cannot keep the self-signed certificate in ${dir}: ${stateDirProblem(err)}`);
  }
  return { ...made, fingerprint: fingerprint(made.cert), created: certFile, warnings: [] };
}

function localAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((i): i is NonNullable<typeof i> => !!i)
    .map((i) => i.address.split('%')[0]!);
}

/**
 * The control channel's cipher suites: TLS 1.3's (as OpenSSL offers them by default), and for
 * TLS 1.2 only ECDHE key exchange with an AEAD cipher. No CBC, SHA-1 MAC, CCM or ARIA suites,
 * no static RSA key exchange. Covers RSA and ECDSA certificates.
 */
export const CONTROL_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Default time for a control client to finish its TLS handshake (--handshake-timeout). */
export const HANDSHAKE_TIMEOUT_MS = 5_000;

/**
 * grpc-js's createSsl takes no cipher list or handshake time; its ServerCredentials
 * constructor takes the options of the HTTP/2 TLS server it builds, so these settings
 * apply to the control port's listener only, nothing else in the process.
 */
class ControlServerCredentials extends grpc.ServerCredentials {
  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

/**
 * `clientCa`: PEM bundle; when given, clients must present a certificate it issued (mutual TLS).
 * `handshakeTimeoutMs`: a connection that has not finished its TLS handshake by then is closed.
 */
export function serverCredentials(tls: ServerTls | undefined, clientCa?: string, handshakeTimeoutMs = HANDSHAKE_TIMEOUT_MS): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  const ca = clientCa ? readFileSync(clientCa) : undefined;
  return new ControlServerCredentials(
    {
      requestCert: ca !== undefined,
      rejectUnauthorized: ca !== undefined,
      minVersion: 'TLSv1.2',
      ciphers: CONTROL_CIPHERS,
      honorCipherOrder: true,
      handshakeTimeout: handshakeTimeoutMs,
    },
    { ca, cert: tls.cert, key: tls.key },
  );
}

export interface ClientTlsOptions {
  insecure?: boolean;
  /** A CA bundle or the server's own certificate (PEM file). */
  serverCert?: string;
  /** Where first-use pins are kept; default $SCISTREAM_HOME/known_servers. */
  knownServers?: string;
  /** Told when a server is pinned for the first time. */
  warn?: (message: string) => void;
  /** PEM certificate and key to present, for servers started with --client-ca. */
  clientCert?: string;
  clientKey?: string;
}

function clientIdentity(opts: ClientTlsOptions): [Buffer | null, Buffer | null] {
  if (!opts.clientCert && !opts.clientKey) return [null, null];
  if (!opts.clientCert || !opts.clientKey) throw new Error('give both --client-cert and --client-key');
  return [readFileSync(opts.clientKey), readFileSync(opts.clientCert)];
}

/**
 * Credentials already made, by what they were made from (bundle or pinned certificate,
 * client identity, and for a pin the server). Parsing the bundle and building its TLS
 * context took about a fifth of a client's CPU per stream set up with new control
 * connections; the files are still read every time, so a changed file takes effect at
 * once. Channels do not share connections through them (client.ts: local subchannel pools).
 */
const made = new Map<string, grpc.ChannelCredentials>();
const MADE_KEPT = 16;

function reuse(parts: (string | Buffer | null)[], make: () => grpc.ChannelCredentials): grpc.ChannelCredentials {
  // A digest, not the parts: a CA bundle may be large, and a client key is kept nowhere else as text.
  const hash = createHash('sha256');
  for (const p of parts) hash.update(String(p?.length ?? -1)).update(':').update(p ?? '');
  const key = hash.digest('hex');
  let creds = made.get(key);
  if (creds) {
    made.delete(key);
  } else {
    creds = make();
    if (made.size >= MADE_KEPT) made.delete(made.keys().next().value!);
  }
  made.set(key, creds);
  return creds;
}

/** Channel credentials for one server, per the options above. */
export async function channelCredentials(server: string, opts: ClientTlsOptions): Promise<grpc.ChannelCredentials> {
  if (opts.insecure) return grpc.credentials.createInsecure();
  if (opts.serverCert) {
    let bundle: string;
    try {
      bundle = readFileSync(opts.serverCert, 'utf8');
    } catch (err) {
      throw new Error(`cannot read --server-cert ${opts.serverCert} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give the s2cs certificate (its state dir's tls/cert.pem) or its CA`);
    }
    const identity = clientIdentity(opts);
    return reuse(['bundle', bundle, ...identity], () => {
      const listed = new Set((bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((pem) => fingerprint(pem)));
      if (listed.size === 0) throw new Error(`--server-cert ${opts.serverCert} holds no PEM certificate`);
      return grpc.credentials.createSsl(Buffer.from(bundle), ...identity, {
        // A server that presents one of the listed certificates themselves is pinned, whatever
        // address it is reached at; one with a CA-issued certificate must match the name.
        checkServerIdentity: (host, cert) => (listed.has(cert.fingerprint256) ? undefined : checkServerIdentity(host, cert)),
      });
    });
  }
  const pinned = await pinOnFirstUse(server, opts);
  const identity = clientIdentity(opts);
  return reuse(['pinned', server, pinned.cert, ...identity], () =>
    grpc.credentials.createSsl(Buffer.from(pinned.cert), ...identity, {
      // The pinned certificate is the identity, whatever name the server is reached by.
      checkServerIdentity: (_host, cert) =>
        cert.fingerprint256 === pinned.fingerprint ? undefined : new Error(`the certificate of s2cs at ${server} changed since it was pinned`),
    }),
  );
}

async function pinOnFirstUse(server: string, opts: ClientTlsOptions): Promise<{ cert: string; fingerprint: string }> {
  const file = opts.knownServers ?? join(scistreamHome(), 'known_servers');
  const { host, port } = parseAddress(server, 's2cs address');
  const cert = await fetchCertificate(host, port, server);
  const seen = fingerprint(cert);
  const known = existsSync(file) ? readFileSync(file, 'utf8').split('\n').map((l) => l.trim().split(/\s+/)) : [];
  const entry = known.find((f) => f[0] === server);
  if (entry) {
    if (entry[1] !== seen) {
      throw new Error(
        `WARNING: THE CERTIFICATE OF s2cs AT ${server} HAS CHANGED. Pinned: ${entry[1]}, now: ${seen}. ` +
          `Someone may be intercepting the control channel. Refusing to connect. If the server's certificate was renewed on purpose, ` +
          `remove its line from ${file}, or pass --server-cert with its certificate`,
      );
    }
    return { cert, fingerprint: seen };
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  appendFileSync(file, `${server} ${seen}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  opts.warn?.(
    `pinned s2cs at ${server} on first use: SHA-256 fingerprint ${seen}; check that it matches the fingerprint s2cs printed at start (kept in ${file})`,
  );
  return { cert, fingerprint: seen };
}

function fetchCertificate(host: string, port: number, server: string): Promise<string> {
  return new Promise((resolve, reject) => {
    // Only to read the certificate; nothing is sent and trust is decided by the pin.
    const s = tlsConnect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['h2'] });
    // No certificate: say what answers there instead (probes, see diagnose.ts), not a guess.
    const fail = (why: string) => {
      clearTimeout(timer);
      s.destroy();
      void identify(server, true).then(
        (found) => reject(new Error(found ? explain(server, '', found, why) : `cannot open TLS to s2cs at ${server} (${why}); check that s2cs runs there and that the address and port are right`)),
        (err: unknown) => reject(err instanceof Error ? err : new Error(String(err))),
      );
    };
    const timer = setTimeout(() => fail('no TLS handshake within 10 s'), 10_000);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      const raw = s.getPeerX509Certificate();
      const alpn = s.alpnProtocol ?? false;
      s.destroy();
      // Never pin the certificate of something that cannot be s2cs (gRPC runs on h2).
      if (alpn !== 'h2') reject(new Error(notS2cs(server, notH2(alpn))));
      else if (!raw) reject(new Error(`s2cs at ${server} presented no certificate`));
      else resolve(raw.toString());
    });
    s.once('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
  });
}

export { setClientName } from './client-name.js';

export { answeredInPlainText, controlMismatch } from '../protocol/diagnose.js';
