// Per-request application secrets: s2cs hands one out with a stream request, the
// application controller presents it (e.g. with Hello), s2cs checks it in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A fresh secret: 32 random bytes, base64url (43 characters). */
export function generateAppSecret(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Whether `presented` equals `expected`, compared in constant time (over SHA-256
 * digests, so neither the content nor the length leaks through timing).
 * A missing or empty presented secret never matches.
 */
export function verifyAppSecret(presented: string | undefined | null, expected: string): boolean {
  if (typeof presented !== 'string' || presented.length === 0 || expected.length === 0) return false;
  const a = createHash('sha256').update(presented, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** SHA-256 of a secret, hex: what may be kept where the secret itself must not be (the agents' records). */
export function hashAppSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Whether `presented` is the secret whose hashAppSecret is `expectedHash`, in constant time. */
export function verifyAppSecretHash(presented: string | undefined | null, expectedHash: string): boolean {
  if (typeof presented !== 'string' || presented.length === 0 || !/^[0-9a-f]{64}$/.test(expectedHash)) return false;
  return timingSafeEqual(createHash('sha256').update(presented, 'utf8').digest(), Buffer.from(expectedHash, 'hex'));
}
