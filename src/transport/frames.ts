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
