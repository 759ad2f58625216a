// End-of-stream signal of the WAN leg (TLS between two of our gateways only).
//
// Why framing: Node 20's TLS does not tell a clean close from a broken one.
// Measured (a TLSSocket over loopback, server side): after the peer's end()
// (close_notify + FIN), after a bare TCP FIN from under the TLS layer, after
// the peer's destroy(), and after a truncated record (a record header promising
// 16 KiB, 4 bytes of it, then FIN), the receiver gets the same 'end', then
// 'close' with hadError false, and no 'error'. TLSWrap handles the transport's
// EOF itself, so OpenSSL never reports SSL_R_UNEXPECTED_EOF_WHILE_READING and
// SSL_OP_IGNORE_UNEXPECTED_EOF changes nothing; the handle exposes no
// SSL_get_shutdown(). So a broken stream would reach the consumer as a clean,
// shorter one. Each direction of the WAN leg therefore carries frames, and only
// an END frame ends a direction cleanly: the leg ending without one (a reset, a
// gateway dying, a FIN injected on the path, a truncated record) resets the
// application on the other side.
//
// A frame is a 4-byte header, big-endian: type in the top byte, payload length in
// the low 24 bits, then the payload. DATA ('D') carries 1 to 16 MiB - 1 bytes;
// END ('E') has length 0 and is the last frame of its direction; HEARTBEAT ('H')
// has length 0, carries nothing and may come anywhere before END. Anything else
// is malformed: both sides are reset.
//
// Heartbeats: a gateway sends one on a WAN connection whose outgoing direction
// has written nothing since its last liveness sweep (about once a second, see
// s2ds/liveness.ts), and never after its own END frame in that direction. The
// other direction may still flow after an END: its sender goes on sending
// heartbeats while it is idle. A side that receives nothing at all (no frame of
// any type) for --wan-dead-after while it is reading takes the peer for dead and
// resets both applications. A plain-TCP WAN (--allow-plaintext-data) is not
// framed, so it stays what the Python reference speaks.

export const FRAME_HEADER = 4;
export const MAX_FRAME_PAYLOAD = 0xff_ffff;
const DATA = 0x44;
const END = 0x45;
const HEARTBEAT = 0x48;

/** The END frame; shared and never written to. */
export const END_FRAME: Buffer = Buffer.from([END, 0, 0, 0]);

/** The HEARTBEAT frame; shared and never written to. */
export const HEARTBEAT_FRAME: Buffer = Buffer.from([HEARTBEAT, 0, 0, 0]);

/** Writes the header of a DATA frame of `length` (1..MAX_FRAME_PAYLOAD) bytes at `offset`. */
export function writeDataHeader(into: Buffer, offset: number, length: number): void {
  into.writeUInt32BE(((DATA << 24) | length) >>> 0, offset);
}

/** A new DATA header (4 bytes from Buffer's pool: no allocation of its own). */
export function dataHeader(length: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER);
  writeDataHeader(h, 0, length);
  return h;
}

/**
 * Parses one direction of the WAN leg. Hands each run of payload to `onData` as a
 * view of the buffer it came in (no copy), calls `onEnd` at the END frame. A
 * header may be split across reads; a HEARTBEAT is skipped. push() returns false
 * on a malformed stream (unknown type, empty DATA, END or HEARTBEAT with a length,
 * anything after END); the caller
 * must then reset both sides and push nothing more.
 */
export class FrameReader {
  /** Whether the END frame has arrived: the direction ended cleanly. */
  ended = false;
  /** Payload bytes still due in the current DATA frame. */
  private remaining = 0;
  private header = 0;
  private headerBytes = 0;

  /** Receives each run of payload; set by whoever writes it on. */
  onData: (view: Buffer) => void = () => {};

  constructor(private readonly onEnd: () => void) {}

  push(buffer: Buffer, bytes: number): boolean {
    let i = 0;
    while (i < bytes) {
      if (this.ended) return false;
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, bytes - i);
        this.onData(i === 0 && n === buffer.length ? buffer : buffer.subarray(i, i + n));
        this.remaining -= n;
        i += n;
        continue;
      }
      this.header = ((this.header << 8) | buffer[i]!) >>> 0;
      i++;
      if (++this.headerBytes < FRAME_HEADER) continue;
      const type = this.header >>> 24;
      const length = this.header & MAX_FRAME_PAYLOAD;
      this.header = 0;
      this.headerBytes = 0;
      if (type === DATA && length > 0) this.remaining = length;
      else if (type === HEARTBEAT && length === 0) continue;
      else if (type === END && length === 0) {
        this.ended = true;
        this.onEnd();
      } else return false;
    }
    return true;
  }
}

// Datagram connections: the WAN leg of a UDP stream (see datagrams.ts and
// docs/protocol.md, "UDP streams: the WAN leg"). The same 4-byte header; a
// DATAGRAM ('U') frame's payload is a 4-byte big-endian flow id then one whole
// datagram of 0 to 65,507 bytes (so its length is 4 to 65,511); FLOW_END ('F')
// has length 4: the flow id. HEARTBEAT and END are as above (END: the carrier
// closed this connection cleanly). DATA has no place on a datagram connection:
// it, an unknown type, and a length out of those bounds are malformed.

// A connection to an encrypted UDP stream's listener may instead carry one TCP
// connection of that stream (what its senders open beside their datagrams, as
// iperf3 -u does): its first frame is then TCP_CONNECTION ('T', length 0), and the
// rest is a TCP stream's WAN leg (DATA, HEARTBEAT, END above). A datagram
// connection's dialer sends a HEARTBEAT first, so the acceptor knows which one it
// has as soon as the handshake is done.

/** The first frame of a TCP connection carried to an encrypted UDP stream's listener; shared and never written to. */
export const TCP_CONNECTION_FRAME: Buffer = Buffer.from([0x54, 0, 0, 0]);

/** Whether a connection's first frame header (4 bytes) says it carries a TCP connection. */
export function isTcpConnectionFrame(header: Buffer): boolean {
  return header.length === FRAME_HEADER && header.equals(TCP_CONNECTION_FRAME);
}

/** The largest UDP payload over IPv4 (65,535 − 20 − 8). */
export const MAX_DATAGRAM = 65_507;
/** Frame header plus flow id: what precedes a datagram. */
export const DATAGRAM_HEADER = FRAME_HEADER + 4;
const DATAGRAM = 0x55;
const FLOW_END = 0x46;
const EMPTY = Buffer.alloc(0);

/** Writes the 8 bytes in front of a datagram of `length` (0..MAX_DATAGRAM) bytes of `flow`. */
export function writeDatagramHeader(into: Buffer, offset: number, flow: number, length: number): void {
  into.writeUInt32BE(((DATAGRAM << 24) | (length + 4)) >>> 0, offset);
  into.writeUInt32BE(flow >>> 0, offset + 4);
}

/** Writes the FLOW_END frame (8 bytes) of `flow`. */
export function writeFlowEnd(into: Buffer, offset: number, flow: number): void {
  into.writeUInt32BE(((FLOW_END << 24) | 4) >>> 0, offset);
  into.writeUInt32BE(flow >>> 0, offset + 4);
}

/** What a datagram connection's reader hands on; a callback returning false makes the stream malformed. */
export interface DatagramFrameHandler {
  datagram(flow: number, datagram: Buffer): boolean;
  flowEnd(flow: number): boolean;
  end(): void;
}

/**
 * Parses one direction of a datagram connection. A datagram that lies whole in
 * one read is handed on as a view of it (no copy); one split across reads is
 * gathered into a buffer of its exact size, allocated when its header arrives
 * (at most 65,507 bytes pending per connection). Either way the buffer handed on
 * is the receiver's to keep: nothing here writes to it again. push() returns
 * false on a malformed stream; the caller must then reset the connection.
 */
export class DatagramFrameReader {
  ended = false;
  /** Why push() last returned false. */
  problem = '';
  private header = 0;
  private headerBytes = 0;
  private type = 0;
  private length = 0;
  private flow = 0;
  private partial: Buffer | undefined;
  private filled = 0;

  constructor(private readonly handler: DatagramFrameHandler) {}

  push(buffer: Buffer): boolean {
    const bytes = buffer.length;
    let i = 0;
    while (i < bytes) {
      if (this.ended) return this.malformed('bytes after END');
      const partial = this.partial;
      if (partial) {
        const n = Math.min(partial.length - this.filled, bytes - i);
        buffer.copy(partial, this.filled, i, i + n);
        this.filled += n;
        i += n;
        if (this.filled === partial.length) {
          this.partial = undefined;
          if (!this.handler.datagram(this.flow, partial)) return this.malformed('refused by the carrier');
        }
        continue;
      }
      this.header = ((this.header << 8) | buffer[i]!) >>> 0;
      i++;
      this.headerBytes++;
      if (this.headerBytes === FRAME_HEADER) {
        this.type = this.header >>> 24;
        this.length = this.header & MAX_FRAME_PAYLOAD;
        this.header = 0;
        const { type, length } = this;
        if (type === HEARTBEAT && length === 0) this.headerBytes = 0;
        else if (type === END && length === 0) {
          this.headerBytes = 0;
          this.ended = true;
          this.handler.end();
        } else if (type === DATAGRAM) {
          if (length < 4 || length > MAX_DATAGRAM + 4) return this.malformed(`a datagram frame of length ${length} (4 to ${MAX_DATAGRAM + 4})`);
        } else if (type === FLOW_END) {
          if (length !== 4) return this.malformed(`a flow-end frame of length ${length} (4)`);
        } else return this.malformed(`an unknown frame type 0x${type.toString(16)} on a datagram connection`);
        continue;
      }
      if (this.headerBytes < DATAGRAM_HEADER) continue;
      this.flow = this.header;
      this.header = 0;
      this.headerBytes = 0;
      if (this.type === FLOW_END) {
        if (!this.handler.flowEnd(this.flow)) return this.malformed('refused by the carrier');
        continue;
      }
      const n = this.length - 4;
      if (n <= bytes - i) {
        const view = n === 0 ? EMPTY : buffer.subarray(i, i + n);
        i += n;
        if (!this.handler.datagram(this.flow, view)) return this.malformed('refused by the carrier');
      } else {
        this.partial = Buffer.allocUnsafe(n);
        this.filled = 0;
      }
    }
    return true;
  }

  /** Whether the stream stopped inside a frame (a truncated frame, should it end here). */
  get midFrame(): boolean {
    return this.headerBytes > 0 || this.partial !== undefined;
  }

  private malformed(problem: string): false {
    if (!this.problem) this.problem = problem;
    return false;
  }
}
