// `node dist/bench/udp-node-floor.js LISTEN_PORT TARGET_PORT`: the least a UDP relay on
// Node's dgram does, as a floor for bench/udp-cpu.ts to compare our hop with: a socket
// on the port, a connected socket per sender towards the target, replies back to the
// sender; no bounds, no counters, no callbacks, no flow ends. What our hop costs above
// this is ours to cut; what this costs above nginx is Node's dgram (a JS callback, a
// Buffer and an address object per datagram). iperf3's control connection is piped
// over TCP on the same port number.
import { createSocket, type Socket } from 'node:dgram';
import { connect, createServer } from 'node:net';

const [listenPort, targetPort] = process.argv.slice(2).map(Number) as [number, number];
const HOST = '127.0.0.1';
const listener = createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20, lookup: (a, _f, cb) => cb(null, a, 4) });
const flows = new Map<string, { socket: Socket; ready: boolean; first: Buffer[] }>();

listener.on('message', (d, from) => {
  const key = `${from.address}:${from.port}`;
  const f = flows.get(key);
  if (f?.ready) return f.socket.send(d);
  if (f) return f.first.push(d);
  const socket = createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  const flow = { socket, ready: false, first: [d] };
  flows.set(key, flow);
  socket.on('message', (x) => listener.send(x, from.port, from.address));
  socket.connect(targetPort, HOST, () => {
    flow.ready = true;
    for (const x of flow.first) socket.send(x);
  });
});
listener.bind(listenPort, HOST);

createServer((s) => {
  const t = connect(targetPort, HOST);
  s.on('error', () => t.destroy());
  t.on('error', () => s.destroy());
  s.pipe(t).pipe(s);
}).listen(listenPort, HOST);
