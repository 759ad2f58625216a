// X.509 certificates for the control channel and for each stream's WAN leg: keys,
// hashing and signatures by Node's crypto (OpenSSL), the certificate's DER by der.ts.
import { X509Certificate, createPrivateKey, generateKeyPair, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { promisify } from 'node:util';
import { bitString, boolean, directoryString, explicit, implicit, octetString, oid, sequence, set, smallInteger, time, unsignedInteger } from './der.js';
import { ipBytes } from '../s2ds/ports.js';

export interface CertificateAndKey {
  /** PEM certificate. */
  cert: string;
  /** PEM private key (PKCS#8). */
  key: string;
}

export interface SelfSignedOptions {
  commonName: string;
  /** Host names and IP addresses the certificate is valid for. */
  names?: string[];
  validDays: number;
}

const ECDSA_WITH_SHA256 = sequence(oid('1.2.840.10045.4.3.2'));
const COMMON_NAME = '2.5.4.3';
const BASIC_CONSTRAINTS = '2.5.29.19';
const KEY_USAGE = '2.5.29.15';
const SUBJECT_ALT_NAME = '2.5.29.17';

const extension = (id: string, critical: boolean, value: Buffer): Buffer =>
  critical ? sequence(oid(id), boolean(true), octetString(value)) : sequence(oid(id), octetString(value));

/** dNSName [2] or iPAddress [7] (RFC 5280 4.2.1.6). */
function generalName(name: string): Buffer {
  return isIP(name) ? implicit(7, ipBytes(name)!) : implicit(2, Buffer.from(name, 'ascii'));
}

const newKeyPair = promisify(generateKeyPair);

/** A fresh P-256 key pair and a self-signed certificate for it. */
export async function createSelfSigned(opts: SelfSignedOptions): Promise<CertificateAndKey> {
  const { publicKey, privateKey } = (await newKeyPair('ec', { namedCurve: 'P-256' })) as { publicKey: KeyObject; privateKey: KeyObject };
  const now = Date.now();
  const names = [...new Set(opts.names ?? [])];
  const name = sequence(set(sequence(oid(COMMON_NAME), directoryString(opts.commonName.replace(/[,=+<>#;"\\]/g, '_')))));
  // A positive 127-bit serial: unique enough, and no sign byte needed.
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const extensions = [
    // CA:true, pathlen 0 lets the certificate serve as its own trust anchor for the peer that pins it.
    extension(BASIC_CONSTRAINTS, true, sequence(boolean(true), smallInteger(0))),
    // digitalSignature (bit 0) and keyCertSign (bit 5): 1000 01xx, the last two bits unused.
    extension(KEY_USAGE, true, bitString(Buffer.from([0x84]), 2)),
  ];
  if (names.length > 0) extensions.push(extension(SUBJECT_ALT_NAME, false, sequence(...names.map(generalName))));
  const tbs = sequence(
    explicit(0, smallInteger(2)), // v3
    unsignedInteger(serial),
    ECDSA_WITH_SHA256,
    name,
    sequence(time(new Date(now - 5 * 60_000)), time(new Date(now + opts.validDays * 86_400_000))),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, sequence(...extensions)),
  );
  const der = sequence(tbs, ECDSA_WITH_SHA256, bitString(sign('sha256', tbs, privateKey)));
  return { cert: pem('CERTIFICATE', der), key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

function pem(label: string, der: Buffer): string {
  return `-----BEGIN ${label}-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

/** SHA-256 fingerprint as OpenSSL and Node print it (AB:CD:...). */
export function fingerprint(certPem: string | Buffer): string {
  return new X509Certificate(certPem).fingerprint256;
}

/** Key types the WAN leg accepts: EC on P-256 or P-384, Ed25519, RSA of 2048 bits or more. */
function keyProblem(cert: X509Certificate): string | undefined {
  const key = cert.publicKey;
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      return details.namedCurve === 'prime256v1' || details.namedCurve === 'secp384r1'
        ? undefined
        : `has an EC key on curve ${details.namedCurve ?? 'unknown'}; use P-256 or P-384`;
    case 'ed25519':
      return undefined;
    case 'rsa':
    case 'rsa-pss':
      return (details.modulusLength ?? 0) >= 2048 ? undefined : `has a ${details.modulusLength ?? 0}-bit RSA key; use 2048 bits or more (or EC P-256)`;
    default:
      return `has a key of type ${key.asymmetricKeyType ?? 'unknown'}, which is not accepted; use EC P-256, P-384, Ed25519 or RSA of 2048 bits or more`;
  }
}

function datesProblem(cert: X509Certificate, now: number): string | undefined {
  if (now < Date.parse(cert.validFrom)) return `is not valid before ${cert.validFrom}; check the clocks of the machine that made it and of this gateway`;
  if (now > Date.parse(cert.validTo)) return `expired on ${cert.validTo}; request the stream again for fresh credentials`;
  return undefined;
}

/**
 * Checks one certificate of a stream's WAN leg: PEM X.509, an accepted key type and
 * strength, and within its validity dates. Returns the reason it is refused.
 */
export function checkStreamCertificate(certPem: string, now = Date.now()): { cert: X509Certificate } | { problem: string } {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return { problem: 'is not a PEM X.509 certificate' };
  }
  const problem = keyProblem(cert) ?? datesProblem(cert, now);
  return problem ? { problem } : { cert };
}

/** Checks a PEM private key belongs to a certificate; returns a reason when it does not. */
export function checkPrivateKey(cert: X509Certificate, keyPem: string): string | undefined {
  try {
    return cert.checkPrivateKey(createPrivateKey(keyPem)) ? undefined : 'does not belong to the certificate';
  } catch {
    return 'is not a PEM private key';
  }
}
