// Certificates and keys read from files at start-up, checked before anything serves
// with them: a file that is missing, unreadable, empty or not PEM, and a key that does
// not belong to its certificate, are errors naming the file and what to do (a gateway
// must not log `ready` and then fail every handshake). A private key that others may
// read is a warning.
import { readFileSync, statSync } from 'node:fs';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';

/** What a start-up problem with a file is, in plain words (an errno code, else the message). */
export function fileProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
      return 'it does not exist';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied: this user may not read it';
    case 'EISDIR':
      return 'it is a directory, not a file';
    case 'ENOTDIR':
      return 'a part of its path is not a directory';
    case 'ELOOP':
      return 'its path has a symbolic link loop';
    case 'EIO':
      return 'the disk reported an I/O error';
    default:
      return code ? `${code}: ${(err as Error).message}` : (err as Error).message;
  }
}

/** A PEM file's text; throws naming `what` (e.g. "--tls-key /etc/x.pem"), the problem and `fix`. */
export function readPemFile(file: string, what: string, fix: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${what}: ${fileProblem(err)}; ${fix}`);
  }
  if (text.trim().length === 0) throw new Error(`${what} is empty; ${fix}`);
  return text;
}

/** The first certificate of a PEM text, parsed; throws naming `what` and `fix`. */
export function parseCertificate(pem: string, what: string, fix: string): X509Certificate {
  if (!/-----BEGIN CERTIFICATE-----/.test(pem)) throw new Error(`${what} holds no PEM certificate (no "-----BEGIN CERTIFICATE-----" line); ${fix}`);
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new Error(`${what} is not a valid PEM certificate (${(err as Error).message}); ${fix}`);
  }
}

/** A PEM private key, parsed; throws naming `what` and `fix` (an encrypted key too: s2cs cannot ask for its passphrase). */
export function parsePrivateKey(pem: string, what: string, fix: string): KeyObject {
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) throw new Error(`${what} holds no PEM private key (no "-----BEGIN ... PRIVATE KEY-----" line); ${fix}`);
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(pem)) {
    throw new Error(`${what} is encrypted with a passphrase, which a server cannot ask for; decrypt it (openssl pkey -in KEY -out KEY.plain) and keep it readable by this user only`);
  }
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new Error(`${what} is not a valid PEM private key (${(err as Error).message}); ${fix}`);
  }
}

export interface PairFiles {
  certFile: string;
  keyFile: string;
  /** How each file is named in a message, e.g. "--tls-cert /etc/x.pem" or "the state dir's certificate /var/lib/s2cs/tls/cert.pem". */
  certWhat: string;
  keyWhat: string;
  /** What to do when a file is bad. */
  fix: string;
}

/**
 * Reads and checks a certificate and its private key: both readable, not empty, PEM, and
 * the key is the certificate's. Returns their texts, and warnings (a key others may read).
 */
export function loadKeyPair(files: PairFiles): { cert: string; key: string; warnings: string[] } {
  const cert = readPemFile(files.certFile, files.certWhat, files.fix);
  const key = readPemFile(files.keyFile, files.keyWhat, files.fix);
  const x509 = parseCertificate(cert, files.certWhat, files.fix);
  const privateKey = parsePrivateKey(key, files.keyWhat, files.fix);
  if (!x509.checkPrivateKey(privateKey)) {
    throw new Error(`${files.keyWhat} does not belong to ${files.certWhat} (the key pair does not match); ${files.fix}`);
  }
  const warnings: string[] = [];
  const exposed = keyExposure(files.keyFile, files.keyWhat);
  if (exposed) warnings.push(exposed);
  return { cert, key, warnings };
}

/** A warning when a private key file may be read by its group or others (mode bits 077). */
export function keyExposure(file: string, what: string): string | undefined {
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch {
    return undefined;
  }
  if ((mode & 0o077) === 0) return undefined;
  const who = [mode & 0o070 ? 'its group' : '', mode & 0o007 ? 'every user' : ''].filter(Boolean).join(' and ');
  return `the private key ${what} may be read by ${who} (mode ${mode.toString(8).padStart(4, '0')}): whoever reads it can impersonate this server; run chmod 600 ${file}`;
}

/** A PEM bundle of certificates (a CA bundle, pinned certificates) read and checked; throws naming `what` and `fix`. */
export function loadCertificateBundle(file: string, what: string, fix: string): string {
  const pem = readPemFile(file, what, fix);
  const certs = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (certs.length === 0) throw new Error(`${what} holds no PEM certificate (no "-----BEGIN CERTIFICATE-----" block); ${fix}`);
  for (const [i, c] of certs.entries()) parseCertificate(c, certs.length > 1 ? `certificate ${i + 1} of ${what}` : what, fix);
  return pem;
}
