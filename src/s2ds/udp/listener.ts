// A UDP stream's listener: a UDP socket bound on the same address and port as the
// stream's TCP listener i. Whatever arrives is handed on with who sent it; replies go
// back out through the same socket, so that they come from the address the sender used.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { InFlight } from './budget.js';

export type DatagramHandler = (datagram: Buffer, from: RemoteInfo) => void;

export class UdpListener {
  private constructor(
    private readonly socket: Socket,
    readonly port: number,
  ) {}

  /** Binds host:port (a numeric address or a name) for datagrams; rejects with the bind's error (EADDRINUSE...). */
  static async bind(host: string, port: number, onDatagram: DatagramHandler, bufferSize: number): Promise<UdpListener> {
    const bare = host.replace(/^\[(.*)\]$/, '$1');
    const socket = createSocket({ type: isIPv6(bare) ? 'udp6' : 'udp4', recvBufferSize: bufferSize, sendBufferSize: bufferSize });
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
    return new UdpListener(socket, port);
  }

  /** Sends a reply to a sender; false (not sent) when it would go over the flow's or the server's bytes in flight. */
  reply(datagram: Buffer, port: number, address: string, flow: { inFlight: number }, perFlowLimit: number, server: InFlight): boolean {
    const n = datagram.length;
    if (flow.inFlight + n > perFlowLimit || server.bytes + n > server.limit) return false;
    flow.inFlight += n;
    server.bytes += n;
    this.socket.send(datagram, port, address, () => {
      flow.inFlight -= n;
      server.bytes -= n;
    });
    return true;
  }

  close(): Promise<void> {
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
