// The first frame of an authenticated WAN connection, read before anything is
// forwarded: on an encrypted UDP stream's listener it says whether the connection
// is the datagram carrier or a TCP connection (frames.ts), and on a connection
// that negotiated WAN_OPEN_ALPN (tls.ts) it is the open frame (TCP_CONNECTION)
// that tells the producer gateway to dial the producer now.
import type { Socket } from 'node:net';
import { FRAME_HEADER } from './frames.js';

/**
 * The first frame header of an authenticated connection, read without taking
 * anything more; rejects when none comes within `ms` or the peer goes first.
 */
export function readFirstFrame(socket: Socket, ms: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const read = () => {
      const header = socket.read(FRAME_HEADER) as Buffer | null;
      if (header) done(undefined, header);
    };
    const gone = () => done(new Error('it closed before its first frame'));
    const timer = setTimeout(() => done(new Error(`it sent no frame within ${ms / 1000} s of its handshake`)), ms);
    timer.unref();
    function done(err: Error | undefined, header?: Buffer): void {
      clearTimeout(timer);
      socket.off('readable', read);
      socket.off('end', gone);
      socket.off('close', gone);
      if (err) reject(err);
      else resolve(header!);
    }
    socket.on('readable', read);
    socket.once('end', gone);
    socket.once('close', gone);
    // Bytes that came with the handshake are readable already: no 'readable' would follow for them.
    read();
  });
}
