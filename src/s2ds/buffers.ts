// What one forwarded connection's buffers cost: the reads it allocates once (see
// transport/reads.ts) and the worst case it reserves from --max-buffer-memory when
// it is admitted (admission.ts).

/** The ring TLS records are read into: 16 records of 16 KiB. */
const RING_SIZE = 256 * 1024;

export function ringSize(bufferSize: number): number {
  return Math.min(bufferSize, RING_SIZE);
}

/**
 * Slack per connection over the stream buffers: a write is taken even when it
 * crosses the high-water mark, and a read is pushed before the mark stops the
 * next one (one 64 KiB read or one 16 KiB TLS record each), plus OpenSSL's record
 * buffers and the socket objects.
 */
const CONNECTION_SLACK = 256 * 1024;

/**
 * The most buffer memory one forwarded connection can hold (user space; kernel
 * socket buffers not counted), with every high-water mark at `bufferSize` (b):
 * - towards the target: plain TCP reads into one reused buffer (readSize) and
 *   reads again only once the kernel took it: that buffer only. A TLS accepted
 *   socket keeps decrypting while its destination is full, until its readable
 *   buffer holds b; the target's writable buffer holds b more. 2b: with a target
 *   that does not read, 2 x 4 MiB was the 8 MiB per connection measured from
 *   outside (before plain accepted sockets read into a reused buffer).
 * - from the target: plain TCP reads into one reused buffer (readSize) written
 *   from there, the next read waiting until the kernel took it: that buffer only.
 *   TLS reads into a ring (ringSize) whose records wait in the accepted socket's
 *   writable buffer, up to b of them (past the ring, in one-off buffers).
 * Measured (test/s2ds/limits.test.ts, b = 1 MiB): arrayBuffers grows by about 2 MiB
 * per plain connection pushing into a target that does not read (the two reused
 * read buffers); before accepted connections read into one, 2b + 1 MiB.
 */
export function connectionMemory(bufferSize: number, accept: 'tcp' | 'tls', connect: 'tcp' | 'tls'): number {
  const fromTarget = connect === 'tcp' ? readSize(bufferSize, accept) : ringSize(bufferSize) + bufferSize;
  const toTarget = accept === 'tcp' ? readSize(bufferSize, connect) : 2 * bufferSize;
  return toTarget + fromTarget + CONNECTION_SLACK;
}

/**
 * How much one read from the producer takes. Measured (docs/benchmarks.md): 1 MiB
 * reads forward plain TCP near loopback speed for 1 to 64 connections (4 MiB is as
 * fast for one connection but slower for many); towards TLS, 256 KiB pieces keep
 * encryption and sending in step. Never more than the configured buffer. A capped
 * stream reads at most what its cap passes in 20 ms (at least 64 KiB): each of its
 * connections may take one read when the bucket allows, so the read is what the
 * stream can run ahead of its rate (measured: 1 MiB reads put 4 connections 6 %
 * above a 100 Mbit/s cap over 4 s).
 */
export function readSize(bufferSize: number, towards: 'tcp' | 'tls', capBps = 0): number {
  const size = Math.min(bufferSize, towards === 'tls' ? 256 * 1024 : 1024 * 1024);
  return capBps > 0 ? Math.min(size, Math.max(64 * 1024, Math.round(capBps * 0.02))) : size;
}
