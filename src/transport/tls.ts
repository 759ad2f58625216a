// TLS with per-stream credentials: the WAN leg between two gateways. Each side
// presents the certificate S2UC made for it and accepts only the one certificate
// S2UC made for the other side (pinned by its SHA-256 fingerprint), so nobody
// else, whatever CA they hold, can open or answer the stream.
import { TLSSocket, connect as tlsConnect, createSecureContext, type ConnectionOptions, type SecureContext } from 'node:tls';
import type { Socket } from 'node:net';
import type { Address } from '../protocol/address.js';
import { fingerprint } from '../security/certificates.js';
import type { SocketOptions, Transport } from './index.js';
import type { ConnectionReads } from './reads.js';
import { invalidArgument } from '../protocol/errors.js';

/** What one gateway holds for one stream's WAN leg. In memory only; never logged. */
export interface StreamCredentials {
  /** PEM certificate this gateway presents. */
  cert: string;
  /** PEM private key of that certificate. */
  key: string;
  /** PEM certificate the other gateway must present. */
  peerCert: string;
}

export const TLS13_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';

/**
 * Offered by every dialing gateway, chosen by every accepting one of this build: the
 * accepting gateway dials the target only at the dialer's open frame (TCP_CONNECTION),
 * so that the dialer may keep connections ready before it needs them (s2ds/warm.ts).
 * A gateway of an older build neither offers nor chooses it: with it, the target is
 * dialed at the handshake and no open frame is sent, as before.
 */
export const WAN_OPEN_ALPN = 'scistream-open/1';

/** Whether an established WAN connection negotiated WAN_OPEN_ALPN. */
export function opensAtFrame(socket: Socket): boolean {
  return (socket as TLSSocket).alpnProtocol === WAN_OPEN_ALPN;
}

/** A peer that has not finished its handshake by then is dropped (unless SocketOptions say otherwise). */
const HANDSHAKE_TIMEOUT_MS = 10_000;

export class PeerRefused extends Error {}
/** The peer did not complete its handshake within the time given. */
export class HandshakeTimedOut extends PeerRefused {}

export class TlsTransport implements Transport {
  readonly name = 'tls';
  private readonly context: SecureContext;
  private readonly peerFingerprint: string;

  /**
   * Builds the stream's TLS context at once, when the connection map arrives: a
   * context OpenSSL refuses (a key too small for its security level, say) is an
   * INVALID_ARGUMENT for UpdateTargets, not an exception at the first connection.
   */
  constructor(credentials: StreamCredentials) {
    this.peerFingerprint = fingerprint(credentials.peerCert);
    try {
      this.context = createSecureContext({
        cert: credentials.cert,
        key: credentials.key,
        ca: [credentials.peerCert],
        minVersion: 'TLSv1.3',
        // AES-128-GCM first: as strong as the stream needs, and cheaper per byte than
        // AES-256 on the gateways' CPUs (the others stay acceptable).
        ciphers: TLS13_CIPHERS,
      });
    } catch (err) {
      throw invalidArgument(`credentials: the TLS library refuses them (${(err as Error).message}); send an EC P-256 certificate and key, as s2uc makes`);
    }
  }

  accept(raw: Socket, options: SocketOptions): Promise<Socket> {
    const tls = new TLSSocket(raw, {
      isServer: true,
      secureContext: this.context,
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: [WAN_OPEN_ALPN],
      highWaterMark: options.highWaterMark,
    } as ConstructorParameters<typeof TLSSocket>[1] & { highWaterMark: number });
    return this.established(tls, 'secure', options.handshakeTimeoutMs);
  }

  connect(address: Address, options: SocketOptions): Promise<Socket> {
    if (options.reads?.kind === 'reused') throw new Error('TLS connections cannot read into a reused buffer: decryption continues into it after a pause; use a RingReadBuffer');
    const opts: ConnectionOptions & { highWaterMark: number; allowHalfOpen: boolean; onread?: ConnectionReads['onread'] } = {
      host: address.host,
      port: address.port,
      secureContext: this.context,
      allowHalfOpen: true,
      highWaterMark: options.highWaterMark,
      ALPNProtocols: [WAN_OPEN_ALPN],
      // The pinned certificate is the identity; the host name plays no part.
      checkServerIdentity: (_host, cert) =>
        cert.fingerprint256 === this.peerFingerprint ? undefined : new PeerRefused('the peer gateway presented another certificate than the stream\'s'),
    };
    if (options.reads) opts.onread = options.reads.onread;
    const tls = tlsConnect(opts);
    tls.setNoDelay(true);
    return this.established(tls, 'secureConnect', options.handshakeTimeoutMs);
  }

  private established(tls: TLSSocket, event: 'secure' | 'secureConnect', timeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const fail = (err: Error) => {
        clearTimeout(timer);
        tls.destroy();
        reject(err);
      };
      const timer = setTimeout(() => fail(new HandshakeTimedOut(`no TLS handshake within ${timeoutMs / 1000} s`)), timeoutMs);
      const closed = () => fail(new PeerRefused('the peer closed the connection during the TLS handshake'));
      // An end during the handshake: the handshake cannot complete (a half-open socket
      // would otherwise hold its descriptor until the timeout).
      const ended = () => fail(new PeerRefused('the peer ended the connection during the TLS handshake'));
      tls.once('error', fail);
      tls.once('close', closed);
      tls.once('end', ended);
      tls.once(event, () => {
        clearTimeout(timer);
        tls.off('error', fail);
        tls.off('close', closed);
        tls.off('end', ended);
        const problem = this.checkPeer(tls, event === 'secureConnect');
        if (problem) {
          fail(new PeerRefused(problem));
          return;
        }
        tls.pause();
        resolve(tls);
      });
    });
  }

  /**
   * The peer proved (in the handshake) that it holds the key of the certificate it
   * presented; it is authorized when that certificate is exactly the pinned one
   * and within its validity. A standalone server-side TLSSocket does not set
   * `authorized` (only tls.Server does), hence the explicit check on both sides.
   */
  private checkPeer(tls: TLSSocket, client: boolean): string | undefined {
    if (client && !tls.authorized) return `peer not authorized: ${String(tls.authorizationError)}`;
    const peer = tls.getPeerX509Certificate();
    if (!peer) return 'the peer presented no certificate';
    if (peer.fingerprint256 !== this.peerFingerprint) return "the peer presented another certificate than the stream's";
    const now = Date.now();
    if (now < Date.parse(peer.validFrom) || now > Date.parse(peer.validTo)) return "the stream's certificate is outside its validity period";
    return undefined;
  }
}
