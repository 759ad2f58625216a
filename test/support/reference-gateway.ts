// A stand-in for the Python reference's s2cs (scistream-proto 1.2.1), written from
// what its programs do on the wire, so that our client can be tested against that
// behaviour in CI. What it reproduces:
// - req answers (and sends its headers) only after a Hello for its uid; no Hello
//   within the timeout: the ports are released and the call fails;
// - an rpc for an unknown uid, and a second req for a known one, fail with UNKNOWN
//   ("Exception calling application: ... entry not found for uid '...'");
// - (helloBeforeListeners) a Hello between publishing a stream and its listeners
//   fails with UNKNOWN ("Exception calling application: 'listeners'");
// - a PROD Hello sets the producer listeners; any Hello releases the waiting req;
// - update ignores field 16 (credentials): the data legs are plain TCP; its answer
//   carries the stream's listeners and the targets, round-robin to num_conn;
// - listeners are written ip:port without brackets;
// - status and capabilities do not exist (UNIMPLEMENTED).
// Its data plane is our LocalDataServer without a WAN leg (plain TCP both ways), in
// place of the HAProxy or stunnel subprocess the reference starts.
import * as grpc from '@grpc/grpc-js';
import { Control, type ControlHandlers } from '../../src/protocol/contract.js';
import type { Response } from '../../src/protocol/contract.js';
import { LocalDataServer } from '../../src/s2ds/index.js';
import { parseAddress } from '../../src/protocol/address.js';
import { silentLogger } from '../../src/log.js';
import { freePortRange } from '../../src/demo/procs.js';

interface Entry {
  role: string;
  numConn: number;
  listeners: string[];
  prodListeners: string[];
  helloReceived: () => void;
  hello: Promise<void>;
  response?: Response;
}

export interface ReferenceGateway {
  address: string;
  /** Calls received, by rpc (including refused ones). */
  calls: Record<'req' | 'update' | 'release' | 'hello', number>;
  /** The `authorization` metadata of every call, in order. */
  authorizations: string[];
  /** Streams held now. */
  streams(): number;
  close(): Promise<void>;
}

const unknown = (details: string): grpc.ServiceError =>
  Object.assign(new Error(details), { code: grpc.status.UNKNOWN, details: `Exception calling application: ${details}`, metadata: new grpc.Metadata() });

export interface ReferenceGatewayOptions {
  helloTimeoutMs?: number;
  ports?: number;
  /**
   * The first this many Hellos for a stream it holds are answered as the reference
   * answers a Hello between publishing a stream and its listeners (UNKNOWN,
   * "Exception calling application: 'listeners'"): that race, made deterministic.
   */
  helloBeforeListeners?: number;
}

export async function startReferenceGateway(opts: ReferenceGatewayOptions = {}): Promise<ReferenceGateway> {
  const helloTimeoutMs = opts.helloTimeoutMs ?? 180_000;
  let notReady = opts.helloBeforeListeners ?? 0;
  const data = new LocalDataServer({
    bindHost: '127.0.0.1',
    portRange: await freePortRange(opts.ports ?? 16),
    bufferSize: 1 << 20,
    waitLimit: 64,
    waitTimeoutMs: 30_000,
    logger: silentLogger,
  });
  const map = new Map<string, Entry>();
  const calls = { req: 0, update: 0, release: 0, hello: 0 };
  const authorizations: string[] = [];
  const seen = (call: { metadata: grpc.Metadata }) => {
    const a = call.metadata.get('authorization')[0];
    authorizations.push(typeof a === 'string' ? a : '');
  };
  const releaseEntry = async (uid: string) => {
    map.delete(uid);
    await data.release(uid);
  };

  const handlers: ControlHandlers = {
    req: (call, cb) => {
      calls.req++;
      seen(call);
      const { uid, role, num_conn } = call.request;
      if (map.has(uid)) return cb(unknown('Entry already found for uid'));
      let helloReceived!: () => void;
      const hello = new Promise<void>((resolve) => (helloReceived = resolve));
      const entry: Entry = { role, numConn: num_conn, listeners: [], prodListeners: [], helloReceived, hello };
      map.set(uid, entry);
      void (async () => {
        try {
          entry.listeners = (await data.startListeners(uid, num_conn)).map((a) => `${a.host}:${a.port}`);
        } catch (err) {
          map.delete(uid);
          return cb(unknown((err as Error).message));
        }
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), helloTimeoutMs)));
        const late = await Promise.race([entry.hello.then(() => false), timedOut]);
        clearTimeout(timer);
        if (late) {
          await releaseEntry(uid);
          return cb(unknown('Hello not received within the timeout period'));
        }
        cb(null, entry.response);
      })();
    },
    hello: (call, cb) => {
      calls.hello++;
      seen(call);
      const entry = map.get(call.request.uid);
      if (!entry) return cb(unknown(`hello request invalid, entry not found for uid '${call.request.uid}'`));
      if (notReady > 0) {
        notReady--;
        return cb(unknown("'listeners'"));
      }
      if (call.request.role === 'PROD') {
        entry.prodListeners = call.request.prod_listeners;
        entry.response = { listeners: entry.listeners, prod_listeners: entry.prodListeners };
        cb(null, { message: 'Sending Prod listeners...', listeners: [] });
      } else {
        entry.response = { listeners: entry.listeners };
        cb(null, { message: 'Sending listeners...', listeners: entry.listeners });
      }
      entry.helloReceived();
    },
    update: (call, cb) => {
      calls.update++;
      seen(call);
      const entry = map.get(call.request.uid);
      if (!entry) return cb(unknown(`update request invalid, entry not found for uid '${call.request.uid}'`));
      const given = call.request.remote_listeners;
      const targets = Array.from({ length: entry.numConn }, (_, i) => given[i % given.length]!);
      // Field 16 (credentials) is not read: the reference's data servers forward plain TCP.
      data.setTargets(call.request.uid, targets.map((t) => parseAddress(t, 'remote_listeners'))).then(
        () => cb(null, { listeners: entry.listeners, prod_listeners: targets }),
        (err: Error) => cb(unknown(err.message)),
      );
    },
    release: (call, cb) => {
      calls.release++;
      seen(call);
      if (!map.has(call.request.uid)) return cb(unknown(`release request invalid, entry not found for uid '${call.request.uid}'`));
      releaseEntry(call.request.uid).then(
        () => cb(null, {}),
        (err: Error) => cb(unknown(err.message)),
      );
    },
    status: (_call, cb) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'Method not found!' }),
    capabilities: (_call, cb) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'Method not found!' }),
  };

  const server = new grpc.Server();
  server.addService(Control.service, handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    address: `127.0.0.1:${port}`,
    calls,
    authorizations,
    streams: () => map.size,
    async close() {
      server.forceShutdown();
      for (const e of map.values()) e.helloReceived();
      map.clear();
      await data.close();
    },
  };
}
