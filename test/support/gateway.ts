// In-process S2CS instances on loopback for integration tests.
import { startControlServer, type ControlServer, type ControlServerOptions } from '../../src/s2cs/server.js';
import { ControlConnection } from '../../src/protocol/client.js';
import { freePortRange } from '../../src/demo/procs.js';

export interface TestGateway {
  server: ControlServer;
  address: string;
  client: ControlConnection;
  close(): Promise<void>;
}

export async function startGateway(opts: Partial<ControlServerOptions> = {}, ports = 16): Promise<TestGateway> {
  const range = opts.portRange ?? (await freePortRange(ports));
  // The protocol tests speak as reference clients (no stream credentials) unless they say otherwise.
  const server = await startControlServer({ port: 0, host: '127.0.0.1', listenerIp: '127.0.0.1', portRange: range, allowPlaintextData: true, ...opts });
  const address = `127.0.0.1:${server.port}`;
  const client = new ControlConnection(address, { insecure: true, deadlineMs: 10_000 });
  return {
    server,
    address,
    client,
    async close() {
      client.close();
      await server.close();
    },
  };
}
