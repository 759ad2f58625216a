// The S2CS–S2DS link, authenticated both ways. Over TCP: mutual TLS where each side
// trusts only the certificates it was given (a pinned certificate, or one issued by
// a CA of the bundle). Over a Unix socket: the file system's permissions (socket
// 0600 in a directory nobody else may write). The TLS itself is Node's (OpenSSL);
// certificates are made by certificates.ts.
import * as grpc from '@grpc/grpc-js';
import { chmodSync, existsSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import { checkServerIdentity, createSecureContext } from 'node:tls';
import { CONTROL_CIPHERS, HANDSHAKE_TIMEOUT_MS, loadServerTls, scistreamHome, type ServerTls } from './control-tls.js';

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The certificates of a PEM bundle and their SHA-256 fingerprints; throws when it holds none or one does not parse. */
export function certificateBundle(pem: string, what: string): { pem: string; fingerprints: Set<string>; notSelfSigned: string[] } {
  const certs = pem.match(PEM_CERTIFICATE) ?? [];
  if (certs.length === 0) throw new Error(`${what} holds no PEM certificate`);
  const fingerprints = new Set<string>();
  const notSelfSigned: string[] = [];
  for (const [i, c] of certs.entries()) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(c);
    } catch {
      throw new Error(`certificate ${i + 1} of ${what} is not a valid X.509 certificate`);
    }
    fingerprints.add(cert.fingerprint256);
    if (!(cert.checkIssued(cert) && cert.verify(cert.publicKey))) notSelfSigned.push(cert.subject.replace(/\n/g, ', '));
  }
  return { pem, fingerprints, notSelfSigned };
}

/** The agent's default state directory: $SCISTREAM_HOME/s2ds (~/.scistream/s2ds). */
export function agentStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(scistreamHome(env), 's2ds');
}

/** The agent's certificate: --tls-cert/--tls-key, or a self-signed pair made once under stateDir/tls (key mode 600). */
export function loadAgentTls(opts: { certFile?: string; keyFile?: string; stateDir: string; names: string[] }): Promise<ServerTls> {
  return loadServerTls({ ...opts, program: 's2ds' });
}

class AgentServerCredentials extends grpc.ServerCredentials {
  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

/**
 * The agent's side of mutual TLS: it presents `tls` and completes a handshake only with
 * a client whose certificate is one of `s2csCerts` (PEM bundle) or was issued by a CA in
 * it. OpenSSL decides, with a chain ending at a self-signed certificate of the bundle:
 * Node 20's TLS server does not pass allowPartialTrustChain on, so a listed certificate
 * that is not self-signed is trusted only with its issuers up to a root (see the CLI's warning).
 */
export function agentServerCredentials(tls: ServerTls, s2csCerts: string, handshakeTimeoutMs = HANDSHAKE_TIMEOUT_MS): grpc.ServerCredentials {
  certificateBundle(s2csCerts, '--s2cs-cert');
  return new AgentServerCredentials(
    {
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      ciphers: CONTROL_CIPHERS,
      honorCipherOrder: true,
      handshakeTimeout: handshakeTimeoutMs,
    },
    { ca: s2csCerts, cert: tls.cert, key: tls.key },
  );
}

export interface AgentClientTls {
  /** PEM bundle (s2cs --s2ds-cert): the agents' own certificates, or the CA that issued them. */
  agentCerts: string;
  /** PEM certificate and key s2cs presents (its control-channel certificate serves). */
  clientCert: string;
  clientKey: string;
}

/**
 * s2cs's side of mutual TLS to an agent. An agent presenting one of the listed
 * certificates themselves is pinned, whatever address it is reached at (an IP
 * address included); one with a certificate a listed CA issued must match the
 * host name or IP address it is reached by.
 */
export function agentChannelCredentials(opts: AgentClientTls): grpc.ChannelCredentials {
  const { fingerprints } = certificateBundle(opts.agentCerts, 'the agent certificate bundle (--s2ds-cert)');
  const context = createSecureContext({
    ca: opts.agentCerts,
    cert: opts.clientCert,
    key: opts.clientKey,
    allowPartialTrustChain: true,
    minVersion: 'TLSv1.2',
    ciphers: CONTROL_CIPHERS,
  });
  return grpc.credentials.createFromSecureContext(context, {
    checkServerIdentity: (host, cert) => (fingerprints.has(cert.fingerprint256) ? undefined : checkServerIdentity(host, cert)),
  });
}

/** A listen address of the agent: TCP host:port, or a Unix socket path. */
export type AgentListen = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

/**
 * Makes a Unix socket path ready for the agent: its directory exists with mode 0700 (made
 * so when missing) and nobody else may write to it; a socket left by an agent that died is
 * removed, one that answers is another agent (refused). Returns the reason it cannot be used.
 */
export async function prepareSocketPath(path: string): Promise<string | undefined> {
  if (!isAbsolute(path)) return `unix socket path ${path} is not absolute; give unix:/full/path (e.g. in the --state-dir)`;
  const dir = dirname(path);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (!st.isDirectory()) return `${dir} is not a directory`;
  if ((st.mode & 0o022) !== 0) {
    return `the directory of the agent's socket, ${dir}, is writable by other users (mode ${(st.mode & 0o777).toString(8)}): they could replace the socket; use a directory only you can write (chmod 700 ${dir}, or the default state dir)`;
  }
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
    return `the directory of the agent's socket, ${dir}, belongs to another user (uid ${st.uid}); use a directory of your own`;
  }
  if (existsSync(path)) {
    if (!lstatSync(path).isSocket()) return `${path} exists and is not a socket; remove it or choose another path`;
    if (await answers(path)) return `another process serves ${path} already (another s2ds?); stop it or choose another path`;
    unlinkSync(path);
  }
  return undefined;
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Binds a gRPC server on a Unix socket readable and writable by its owner only: the
 * umask closes the window between bind and chmod (nothing else in the agent creates
 * files meanwhile).
 */
export async function bindUnixSocket(server: grpc.Server, path: string): Promise<void> {
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
  } finally {
    process.umask(old);
  }
  chmodSync(path, 0o600);
}
