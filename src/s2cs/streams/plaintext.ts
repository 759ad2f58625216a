// Whether a stream may cross the WAN as plain TCP here, read from where the data listeners bind.
import { ipBytes, isV4Mapped } from '../../s2ds/ports.js';

/**
 * Whether plain-TCP data legs (UpdateTargets without per-stream credentials) are
 * accepted, and why, in one line for the start-up log. On a loopback bind address
 * nothing can reach the listeners from another host, so the seed tutorial works on
 * defaults; on any other address only with --allow-plaintext-data.
 */
export function plaintextDataPolicy(bindHost: string | undefined, allowFlag: boolean): { accepts: boolean; why: string } {
  if (allowFlag) {
    return { accepts: true, why: 'plain-TCP data legs accepted on every address (--allow-plaintext-data): streams set up without per-stream credentials cross the WAN unencrypted' };
  }
  if (bindHost !== undefined && isLoopback(bindHost)) {
    return { accepts: true, why: `plain-TCP data legs accepted: the data listeners are on loopback (${bindHost}), which no other host reaches; on any other address only encrypted streams unless --allow-plaintext-data` };
  }
  return {
    accepts: false,
    why: `only encrypted data legs (per-stream credentials, sent by \`s2uc request\` between two SciStream-TS gateways): the data listeners are on ${bindHost ?? 'an address'}, not loopback; --allow-plaintext-data accepts unencrypted streams`,
  };
}

/** 127.0.0.0/8, ::1, IPv4-mapped 127.x, and the name localhost. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (h === 'localhost') return true;
  const bytes = ipBytes(h);
  if (!bytes) return false;
  if (bytes.length === 4) return bytes[0] === 127;
  return isV4Mapped(bytes) ? bytes[12] === 127 : bytes.equals(IPV6_LOOPBACK);
}

const IPV6_LOOPBACK = Buffer.from('00000000000000000000000000000001', 'hex');
