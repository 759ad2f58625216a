// The Python reference's s2uc spellings (scistream-proto 1.2.1) in our terms: its
// `--mock True` uid, its click booleans, its Globus scope ids and its
// `--remote_ip IP --receiver_ports P,...` pair. Its users have these in their shell history.
import { formatAddress, parseAddressList } from '../protocol/address.js';

/** The uid the reference's `--mock True` gives every request, so that the other facility's command can name it. */
export const MOCK_UID = '4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3';

/** The reference's default --receiver_ports (the ports its mock controller names). */
export const REFERENCE_RECEIVER_PORTS = '5074,5075,5076,37000,47000';

/** Click's boolean words, as the reference's `--mock` takes them. */
export function parseClickBool(text: string): boolean {
  const t = text.trim().toLowerCase();
  if (['true', '1', 'yes', 'y', 'on', 't'].includes(t)) return true;
  if (['false', '0', 'no', 'n', 'off', 'f', ''].includes(t)) return false;
  throw new Error(`"${text}" is not a boolean: give True or False (or 1 / 0)`);
}

/**
 * The uid of a request given the reference's `--mock`: with `--mock True`, the fixed
 * uid (one notice line); `--uid` wins over it.
 */
export function mockedUid(mock: boolean | undefined, uid: string | undefined, say: (line: string) => void): string | undefined {
  if (!mock) return uid;
  if (uid !== undefined) {
    say(`s2uc: note: --mock True ignored: --uid ${uid} names the stream`);
    return uid;
  }
  say(`s2uc: note: --mock True: the stream's uid is ${MOCK_UID}, as the reference's; prefer --uid UID`);
  return MOCK_UID;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The scope string a `--scope` names. The reference takes a Globus resource server's
 * id and asks Globus Auth for `https://auth.globus.org/scopes/ID/scistream`; with
 * Globus Auth as the issuer a bare id means that here too, and anything else is taken
 * as written (other providers name scopes as they like).
 */
export function scopeString(scope: string, issuer: string): string {
  const s = scope.trim();
  if (issuer.replace(/\/+$/, '') === 'https://auth.globus.org' && UUID.test(s)) return `https://auth.globus.org/scopes/${s}/scistream`;
  return s;
}

/** `--remote_ip IP --receiver_ports P,...` as host:port addresses (an IPv6 host in brackets). */
export function receiverAddresses(remoteIp: string, receiverPorts: string, field = '--receiver-ports'): string[] {
  const host = remoteIp.includes(':') && !remoteIp.startsWith('[') ? `[${remoteIp}]` : remoteIp;
  const list = receiverPorts
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')
    .map((p) => `${host}:${p}`)
    .join(',');
  return parseAddressList(list, field).map(formatAddress);
}
