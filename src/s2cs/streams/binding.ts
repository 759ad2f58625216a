// Who may control a stream when s2cs checks no tokens (--auth none): whoever can
// prove they requested it. Our clients prove it with the stream's control secret
// (Response.control_secret), which they announce on req (BINDING_HEADER); a reference
// client, which knows no such secret, with the address its req came from. With token
// checking the owner's identity decides (streams.ts), and a secret given is checked too.
import { generateAppSecret, hashAppSecret, verifyAppSecretHash } from '../../auth/index.js';
import { ScistreamError } from '../../protocol/errors.js';
import { ipBytes, isV4Mapped } from '../../s2ds/ports.js';

export interface StreamBinding {
  /** SHA-256 (hex) of the stream's control secret; '' for a stream an older s2cs set up. */
  secretHash: string;
  /** The exact address the stream's first req came from (peerAddress); '' when unknown. */
  source: string;
  /** The requester announced that it presents the secret: its address alone proves nothing. */
  bySecret: boolean;
}

/** What a caller of update, release or status brings to prove a stream is theirs. */
export interface ControlProof {
  /** The caller's exact address (peerAddress). */
  peer: string;
  /** The control secret presented ('' when none). */
  secret: string;
}

/**
 * A stream's new binding and the secret that goes to its requester (only ever in the
 * answer to its first req): the one the requester proposed, or a new random one.
 */
export function bindStream(peer: string, bySecret: boolean, proposed?: string): { binding: StreamBinding; secret: string } {
  const secret = proposed ?? generateAppSecret();
  return { binding: { secretHash: hashAppSecret(secret), source: peer, bySecret }, secret };
}

export type ControlProblem = 'wrong-secret' | 'secret-needed' | 'other-address';

/**
 * Why `proof` does not show that the stream is the caller's, or undefined when it
 * does. `identityChecked`: the caller's token identity was already matched to the
 * stream's owner (token checking), so only a secret given is checked. The right
 * secret proves it from anywhere; for a stream bound to its requester's address, that
 * address proves it too (a stale secret a client still holds for a reused uid does not
 * lock its requester out).
 */
export function controlProblem(binding: StreamBinding, proof: ControlProof, identityChecked: boolean): ControlProblem | undefined {
  const wrong = proof.secret !== '';
  if (wrong && (binding.secretHash === '' || verifyAppSecretHash(proof.secret, binding.secretHash))) return undefined;
  if (identityChecked) return wrong ? 'wrong-secret' : undefined;
  if (binding.bySecret) return wrong ? 'wrong-secret' : 'secret-needed';
  // Set up by an s2cs that did not bind streams: as it was (anyone), rather than no one.
  if (binding.source === '' || proof.peer === binding.source) return undefined;
  return wrong ? 'wrong-secret' : 'other-address';
}

/** The PERMISSION_DENIED for a refused update or release, naming the cause and what to do. */
export function controlDenied(uid: string, action: 'update' | 'release' | 'request', problem: ControlProblem): ScistreamError {
  const ask = `or ask whoever set stream ${uid} up to ${action} it`;
  switch (problem) {
    case 'wrong-secret':
      return new ScistreamError(
        'PERMISSION_DENIED',
        `the control secret given does not match stream ${uid}: only the secret its request was answered with may ${action} it. ` +
          `Give that one (s2uc keeps it under $SCISTREAM_HOME/control-secrets; s2uc release --control-secret or SCISTREAM_CONTROL_SECRET), ${ask}`,
      );
    case 'secret-needed':
      return new ScistreamError(
        'PERMISSION_DENIED',
        `stream ${uid} is bound to the control secret its request was answered with (control_secret), and this ${action} carries none. ` +
          `Run it with the s2uc that requested the stream (it keeps the secret under $SCISTREAM_HOME/control-secrets), give the secret with s2uc release --control-secret or SCISTREAM_CONTROL_SECRET, ${ask}`,
      );
    case 'other-address':
      return new ScistreamError(
        'PERMISSION_DENIED',
        `stream ${uid} was requested from another address, and this gateway checks no tokens (--auth none): without the stream's control secret only the address that requested it may ${action} it. ` +
          `Send the ${action} from that host, set streams up with s2uc (which presents the control secret), ${ask}`,
      );
  }
}

/**
 * The caller's exact address from a gRPC peer ("1.2.3.4:5678", "[::1]:5678"):
 * IPv4-mapped IPv6 as IPv4, IPv6 in one canonical spelling, never by prefix (a /64
 * may be a whole site). Anything else (a unix socket) as given.
 */
export function peerAddress(peer: string): string {
  let host = peer;
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(peer);
  if (bracketed) host = bracketed[1]!;
  else if (/^[^:]+:\d+$/.test(peer)) host = peer.slice(0, peer.lastIndexOf(':'));
  const bytes = ipBytes(host.replace(/%.*$/, ''));
  if (!bytes) return host;
  if (bytes.length === 4) return [...bytes].join('.');
  if (isV4Mapped(bytes)) return [...bytes.subarray(12)].join('.');
  return Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16)).join(':');
}

/**
 * Whether a status caller sees the stream in full (listeners, targets) without token
 * checking: it presented the stream's secret (`secretHashes`: SHA-256 of each secret
 * it presented; a set lookup of digests leaks nothing a timing attack could use), or
 * the stream is bound to the caller's address.
 */
export function showsInFull(binding: StreamBinding, peer: string, secretHashes: ReadonlySet<string>): boolean {
  if (binding.secretHash !== '' && secretHashes.has(binding.secretHash)) return true;
  if (binding.bySecret) return false;
  return binding.source === '' || binding.source === peer;
}

/**
 * Why a retried req (same uid and fields) is not the requester's, or undefined. Without
 * token checking a retry must come from the address of the first, or propose the
 * stream's secret again (a client that proposed it keeps it through a lost answer): its
 * answer names the stream's listeners. (The answer never carries the secret again.)
 */
export function retryProblem(binding: StreamBinding, peer: string, identityChecked: boolean, secret?: string): ControlProblem | undefined {
  if (identityChecked || binding.source === '') return undefined;
  if (secret && binding.secretHash !== '' && verifyAppSecretHash(secret, binding.secretHash)) return undefined;
  return peer === binding.source ? undefined : 'other-address';
}
