// A UDP stream's listener: a UDP socket bound on the same address and port as the
// stream's TCP listener i. Whatever arrives is handed on with who sent it; replies go
// back out through the same socket, so that they come from the address the sender used.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { InFlight } from './budget.js';
import type { DropCause } from './counters.js';
import { literalFirst, SendQueue, type Budgeted } from './send-queue.js';

export type DatagramHandler = (datagram: Buffer, from: RemoteInfo) => void;

export class UdpListener {
  private readonly queue: SendQueue;

  private constructor(
    private readonly socket: Socket,
    readonly port: number,
    server: InFlight,
    dropped: (cause: DropCause) => void,
  ) {
    this.queue = new SendQueue(socket, server, dropped);
  }

  /**
   * Binds host:port (a numeric address or a name) for datagrams; rejects with the bind's
   * error (EADDRINUSE...). Replies count in `server`'s bytes in flight while they wait.
   */
  static async bind(host: string, port: number, onDatagram: DatagramHandler, bufferSize: number, server: InFlight, dropped: (cause: DropCause) => void): Promise<UdpListener> {
    const bare = host.replace(/^\[(.*)\]$/, '$1');
    const socket = createSocket({ type: isIPv6(bare) ? 'udp6' : 'udp4', recvBufferSize: bufferSize, sendBufferSize: bufferSize, lookup: literalFirst });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address: bare, port, exclusive: true }, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    // A send that fails (an ICMP error surfaced late) must not kill the gateway.
    socket.on('error', noop);
    socket.on('message', onDatagram);
    return new UdpListener(socket, port, server, dropped);
  }

  /** Sends a reply to a sender; false (not sent) when it would go over the flow's or the server's bytes in flight. */
  reply(datagram: Buffer, port: number, address: string, flow: Budgeted, perFlowLimit: number): boolean {
    return this.queue.send(datagram, flow, perFlowLimit, port, address);
  }

  close(): Promise<void> {
    this.queue.forget();
    return new Promise((resolve) => {
      try {
        this.socket.close(() => resolve());
      } catch {
        resolve();
      }
    });
  }
}

function noop(): void {}
