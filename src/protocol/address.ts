// host:port parsing shared by every component; IPv6 hosts are written [addr]:port
// (the reference's unbracketed addr:port is read too: the port is what follows the last colon).
import { isIP } from 'node:net';
import { invalidArgument } from './errors.js';
import { shown } from './text.js';

export interface Address {
  host: string;
  port: number;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export interface ParseOptions {
  /** Accept port 0 ("any free port"), for local listen addresses only. */
  allowPortZero?: boolean;
}

/** Parses "host:port" or "[v6]:port"; `field` names the input in the error message. */
export function parseAddress(text: string, field = 'address', opts: ParseOptions = {}): Address {
  const fail = (why: string) =>
    invalidArgument(`${field}: "${shown(text, 80)}" is not a valid host:port (${why}); write it as host:port, or [ipv6]:port`);
  if (typeof text !== 'string' || text.length === 0) throw fail('it is empty');
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') throw fail('an IPv6 address needs the form [addr]:port');
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (isIP(host) !== 6) throw fail(`"${shown(host)}" is not an IPv6 address`);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) throw fail('the port is missing');
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    // The Python reference writes its listeners as f"{ip}:{port}", IPv6 too; a port is
    // always required, so the last group is the port.
    if (host.includes(':') && isIP(host) !== 6) throw fail('an IPv6 address belongs in brackets, [addr]:port');
    if (host.includes(':')) return finish(host, portText);
    if (isIP(host) !== 4 && !HOSTNAME.test(host)) throw fail(`"${shown(host, 80)}" is not a host name or IPv4 address`);
    // All-numeric names such as 256.1.1.1 are typos of IPv4 addresses, not host names.
    if (isIP(host) !== 4 && /^[0-9.]+$/.test(host)) throw fail(`"${shown(host)}" is not a valid IPv4 address`);
  }
  return finish(host, portText);

  function finish(host: string, portText: string): Address {
    if (!/^[0-9]{1,5}$/.test(portText)) throw fail('the port must be a number');
    const port = Number(portText);
    if (port > 65535 || (port < 1 && !(port === 0 && opts.allowPortZero))) throw fail('the port must be between 1 and 65535');
    return { host, port };
  }
}

export function formatAddress(a: Address): string {
  return isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Parses a comma-separated list of addresses, as the CLIs take them. */
export function parseAddressList(text: string, field = 'addresses', opts: ParseOptions = {}): Address[] {
  const parts = text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (parts.length === 0) throw invalidArgument(`${field}: no address given; write host:port[,host:port...]`);
  return parts.map((p, i) => parseAddress(p, `${field}[${i}]`, opts));
}
