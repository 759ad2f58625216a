// X.509 certificates for the control channel and for each stream's WAN leg,
// made with @peculiar/x509 over Node's WebCrypto: no cryptography of our own.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto, X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

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

/** A fresh P-256 key pair and a self-signed certificate for it. */
export async function createSelfSigned(opts: SelfSignedOptions): Promise<CertificateAndKey> {
  const keys = (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const names = [...new Set(opts.names ?? [])];
  const extensions: x509.Extension[] = [
    // CA:true lets the certificate serve as its own trust anchor for the peer that pins it.
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign, true),
  ];
  if (names.length > 0) {
    extensions.push(new x509.SubjectAlternativeNameExtension(names.map((n) => (isIP(n) ? { type: 'ip', value: n } : { type: 'dns', value: n }))));
  }
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(16).toString('hex').replace(/^[89a-f]/, '7'),
    name: `CN=${opts.commonName.replace(/[,=+<>#;"\\]/g, '_')}`,
    notBefore: new Date(now - 5 * 60_000),
    notAfter: new Date(now + opts.validDays * 86_400_000),
    keys: keys as unknown as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0]['keys'],
    signingAlgorithm: ALGORITHM,
    extensions,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey) as ArrayBuffer);
  const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
  return { cert: cert.toString('pem') + '\n', key };
}

/** SHA-256 fingerprint as OpenSSL and Node print it (AB:CD:...). */
export function fingerprint(certPem: string | Buffer): string {
  return new X509Certificate(certPem).fingerprint256;
}

/** Checks a PEM certificate and key belong together; returns a reason when they do not. */
export function checkPair(certPem: string, keyPem: string): string | undefined {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return 'the certificate is not a PEM X.509 certificate';
  }
  try {
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) return 'the private key does not belong to the certificate';
  } catch {
    return 'the private key is not a PEM private key';
  }
  return undefined;
}
