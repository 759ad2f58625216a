// X.509 certificates for the control channel and for each stream's WAN leg, made
// with @peculiar/x509 over Node's WebCrypto: no cryptography and no DER of our own.
// The library takes about 100 ms to load, so it is loaded when a certificate is
// first made (preloadCertificates starts that early, while a client waits on the
// network), never by a program that makes none (--help, status, hello).
import { webcrypto, X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';

type X509 = typeof import('@peculiar/x509');

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

let library: Promise<X509> | undefined;

/** Loads the certificate library (once); returns at once. Later calls of createSelfSigned find it ready. */
export function preloadCertificates(): Promise<X509> {
  library ??= (async () => {
    await import('reflect-metadata');
    const x509 = await import('@peculiar/x509');
    x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
    return x509;
  })();
  return library;
}

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
  const x509 = await preloadCertificates();
  const keys = (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const names = [...new Set(opts.names ?? [])];
  const extensions: InstanceType<X509['Extension']>[] = [
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
    keys: keys as unknown as Parameters<X509['X509CertificateGenerator']['createSelfSigned']>[0]['keys'],
    signingAlgorithm: ALGORITHM,
    extensions,
  });
  const pkcs8 = Buffer.from((await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)) as ArrayBuffer);
  const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
  return { cert: cert.toString('pem') + '\n', key };
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
