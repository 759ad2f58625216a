import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { endianness } from 'node:os';
import { ipBytes, isV4Mapped, ListeningPorts, parsePortRange, parseProcNetTcp, PortPool } from '../../src/s2ds/ports.js';
import { freePortRange } from '../../src/demo/procs.js';
import { ScistreamError } from '../../src/protocol/errors.js';
import { untilTrue } from '../support/until.js';

function assertInvalid(fn: () => unknown, fragment: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ScistreamError, `expected ScistreamError, got ${String(err)}`);
    assert.equal(err.kind, 'INVALID_ARGUMENT');
    assert.ok(err.message.includes(fragment), `message ${JSON.stringify(err.message)} should contain ${fragment}`);
    return true;
  });
}

describe('parsePortRange', () => {
  it('parses FIRST-LAST', () => {
    assert.deepEqual(parsePortRange('5100-5200'), { first: 5100, last: 5200 });
    assert.deepEqual(parsePortRange('1-65535'), { first: 1, last: 65535 });
    assert.deepEqual(parsePortRange('7000-7000'), { first: 7000, last: 7000 });
    assert.deepEqual(parsePortRange(' 5100-5101 '), { first: 5100, last: 5101 });
  });

  it('rejects a reversed range and suggests the right order', () => {
    assertInvalid(() => parsePortRange('5200-5100'), 'reversed');
    assertInvalid(() => parsePortRange('5200-5100'), '5100-5200');
  });

  for (const text of ['0-10', '0-0', '1-65536', '65535-65536', '70000-70001', '99999-99999']) {
    it(`rejects out-of-range ${text}`, () => {
      assertInvalid(() => parsePortRange(text), text);
    });
  }

  for (const text of ['', ' ', '5100', '5100-', '-5200', '5100:5200', '5100 - 5200', 'a-b', '5100-52x0', '5100-5200-5300', '-1-5', '5100-123456', '0x10-0x20', '1e3-2e3']) {
    it(`rejects garbage ${JSON.stringify(text)}`, () => {
      assertInvalid(() => parsePortRange(text), 'port range');
    });
  }
});

describe('PortPool', () => {
  it('reports size, available and reserved', () => {
    const pool = new PortPool({ first: 5000, last: 5004 });
    assert.equal(pool.size, 5);
    assert.equal(pool.available, 5);
    assert.equal(pool.reserved, 0);
    pool.take();
    pool.take();
    assert.equal(pool.available, 3);
    assert.equal(pool.reserved, 2);
  });

  it('hands out each port once, in order, then undefined', () => {
    const pool = new PortPool({ first: 5000, last: 5003 });
    assert.deepEqual([pool.take(), pool.take(), pool.take(), pool.take()], [5000, 5001, 5002, 5003]);
    assert.equal(pool.take(), undefined);
    assert.equal(pool.take(), undefined);
    assert.equal(pool.available, 0);
    assert.equal(pool.reserved, 4);
  });

  it('gives a returned port back to the pool', () => {
    const pool = new PortPool({ first: 5000, last: 5001 });
    const a = pool.take()!;
    pool.take();
    assert.equal(pool.take(), undefined);
    pool.give(a);
    assert.equal(pool.available, 1);
    assert.equal(pool.reserved, 1);
    assert.equal(pool.take(), a);
    assert.equal(pool.take(), undefined);
  });

  it('does not hand out a just-returned port next (round robin)', () => {
    const pool = new PortPool({ first: 5000, last: 5009 });
    const p = pool.take()!;
    assert.equal(p, 5000);
    pool.give(p);
    const next = pool.take()!;
    assert.notEqual(next, p);
    assert.equal(next, 5001);
    // The returned port only comes back after the rest of the range has been used.
    const seen = [next];
    for (let i = 0; i < 8; i++) seen.push(pool.take()!);
    assert.deepEqual(seen, [5001, 5002, 5003, 5004, 5005, 5006, 5007, 5008, 5009]);
    assert.equal(pool.take(), 5000);
    assert.equal(pool.take(), undefined);
  });

  it('wraps around and skips ports still in use', () => {
    const pool = new PortPool({ first: 100, last: 104 });
    const ports = [pool.take(), pool.take(), pool.take(), pool.take()]; // 100..103
    pool.give(ports[1]!); // 101 free
    pool.give(ports[3]!); // 103 free
    assert.equal(pool.take(), 104);
    assert.equal(pool.take(), 101); // wrapped: 100 still taken, 101 free
    assert.equal(pool.take(), 103); // 102 still taken
    assert.equal(pool.take(), undefined);
    assert.equal(pool.reserved, 5);
  });

  it('cycles through the whole range under take/give churn', () => {
    const pool = new PortPool({ first: 6000, last: 6002 });
    const got: number[] = [];
    for (let i = 0; i < 7; i++) {
      const p = pool.take()!;
      got.push(p);
      pool.give(p);
    }
    assert.deepEqual(got, [6000, 6001, 6002, 6000, 6001, 6002, 6000]);
    assert.equal(pool.available, 3);
    assert.equal(pool.reserved, 0);
  });

  it('ignores give of a port that is not reserved', () => {
    const pool = new PortPool({ first: 5000, last: 5001 });
    pool.give(5000);
    pool.give(9999);
    assert.equal(pool.available, 2);
    assert.equal(pool.reserved, 0);
    const p = pool.take()!;
    pool.give(p);
    pool.give(p);
    assert.equal(pool.available, 2);
    assert.equal(pool.reserved, 0);
  });

  it('works with a single-port range', () => {
    const pool = new PortPool({ first: 7000, last: 7000 });
    assert.equal(pool.take(), 7000);
    assert.equal(pool.take(), undefined);
    pool.give(7000);
    assert.equal(pool.take(), 7000);
  });

  it('handles the full port range', () => {
    const pool = parsePortRange('1-65535');
    const big = new PortPool(pool);
    assert.equal(big.size, 65535);
    const seen = new Set<number>();
    for (let i = 0; i < 65535; i++) seen.add(big.take()!);
    assert.equal(seen.size, 65535);
    assert.equal(big.take(), undefined);
    assert.equal(big.available, 0);
  });
});

describe('ipBytes', () => {
  it('reads IPv4, IPv6 in its spellings, mapped and bracketed; nothing else', () => {
    assert.equal(ipBytes('10.1.2.3')?.toString('hex'), '0a010203');
    assert.equal(ipBytes('::1')?.toString('hex'), '00000000000000000000000000000001');
    assert.equal(ipBytes('[2001:db8::1:0]')?.toString('hex'), '20010db8000000000000000000010000');
    assert.equal(ipBytes('::ffff:127.0.0.1')?.toString('hex'), '00000000000000000000ffff7f000001');
    assert.ok(isV4Mapped(ipBytes('::ffff:127.0.0.1')!));
    assert.equal(ipBytes('localhost'), undefined);
    assert.equal(ipBytes('1.2.3'), undefined);
  });
});

describe('parseProcNetTcp', () => {
  it('keeps LISTEN rows only, with address and port', () => {
    const v4 = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0',
      '   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0',
      '   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0 20 4 30 10 -1',
    ].join('\n');
    const rows = parseProcNetTcp(v4);
    if (endianness() !== 'LE') return; // the sample is from a little-endian host
    assert.deepEqual(
      rows.map((r) => [r.address.toString('hex'), r.port]),
      [
        ['7f000001', 8080],
        ['00000000', 22],
      ],
    );
    const v6 = '   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 4 1 0 100 0 0 10 0';
    assert.deepEqual(
      parseProcNetTcp(v6).map((r) => [r.address.toString('hex'), r.port]),
      [['00000000000000000000000000000001', 8081]],
    );
  });
});

describe('ListeningPorts', () => {
  const sock = (host: string, port: number) => ({ address: ipBytes(host)!, port });
  const range = { first: 7000, last: 7009 };
  const fixed = (socks: { address: Buffer; port: number }[]) => () => socks;

  it('an IPv4 bind address meets the same address, IPv4 and IPv6 wildcards and its mapped form; not other addresses', () => {
    const socks = [sock('127.0.0.1', 7000), sock('0.0.0.0', 7001), sock('::', 7002), sock('::ffff:127.0.0.1', 7003), sock('10.0.0.1', 7004), sock('::1', 7005), sock('127.0.0.1', 6999)];
    assert.deepEqual(new ListeningPorts(range, '127.0.0.1', fixed(socks)).ports(), [7000, 7001, 7002, 7003]);
    assert.deepEqual(new ListeningPorts(range, '0.0.0.0', fixed(socks)).ports(), [7000, 7001, 7002, 7003, 7004]);
    assert.deepEqual(new ListeningPorts(range, '::1', fixed(socks)).ports(), [7002, 7005]);
    assert.deepEqual(new ListeningPorts(range, '::', fixed(socks)).ports(), [7000, 7001, 7002, 7003, 7004, 7005]);
    assert.deepEqual(new ListeningPorts(range, 'gateway.example', fixed(socks)).ports(), [7000, 7001, 7002, 7003, 7004, 7005]);
  });

  it('without /proc nothing is known; a reading is reused for about a second', () => {
    assert.equal(new ListeningPorts(range, '127.0.0.1', () => undefined).ports(), undefined);
    let reads = 0;
    const lp = new ListeningPorts(range, '127.0.0.1', () => (reads++, []));
    lp.ports();
    lp.ports();
    assert.equal(reads, 1);
  });

  it('finds a real listener of this process in the range, on Linux', async (t) => {
    if (!existsSync('/proc/net/tcp')) return t.skip('no /proc/net/tcp here');
    const r = await freePortRange(3);
    const server = createServer();
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: r.first + 1 }, resolve));
    try {
      // Other tests running alongside may listen in the range too: look at our port only.
      assert.ok(new ListeningPorts(r, '127.0.0.1').ports()?.includes(r.first + 1));
      assert.ok(new ListeningPorts(r, '0.0.0.0').ports()?.includes(r.first + 1));
      assert.ok(!new ListeningPorts(r, '10.255.255.254').ports()?.includes(r.first + 1), 'another address does not conflict');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    assert.ok(!new ListeningPorts(r, '127.0.0.1').ports()?.includes(r.first + 1));
  });

  it('finds listeners opened after hundreds of connections (the kernel writes LISTEN rows first; reading stops after them), IPv4 and IPv6', async (t) => {
    if (!existsSync('/proc/net/tcp')) return t.skip('no /proc/net/tcp here');
    // Connections first, so that rows of theirs could come before the listeners' if the order were by age.
    const hub = createServer((s) => s.on('error', () => undefined));
    await new Promise<void>((resolve) => hub.listen({ host: '127.0.0.1', port: 0 }, resolve));
    const port = (hub.address() as { port: number }).port;
    const clients = await Promise.all(
      Array.from({ length: 300 }, () => new Promise<Socket>((resolve, reject) => {
        const c = connect(port, '127.0.0.1', () => resolve(c));
        c.on('error', reject);
      })),
    );
    const r = await freePortRange(4);
    const v4 = createServer();
    const v6 = createServer();
    await new Promise<void>((resolve) => v4.listen({ host: '127.0.0.1', port: r.first }, resolve));
    const hasV6 = await new Promise<boolean>((resolve) => {
      v6.once('error', () => resolve(false));
      v6.listen({ host: '::1', port: r.first + 2 }, () => resolve(true));
    });
    try {
      const lp = new ListeningPorts(r, '::');
      const found = lp.ports();
      assert.ok(found?.includes(r.first), `the IPv4 listener on ${r.first} among ${JSON.stringify(found)}`);
      if (hasV6) assert.ok(found?.includes(r.first + 2), `the IPv6 listener on ${r.first + 2} among ${JSON.stringify(found)}`);
    } finally {
      for (const c of clients) c.destroy();
      await Promise.all([hub, v4, ...(hasV6 ? [v6] : [])].map((s) => new Promise((resolve) => s.close(resolve))));
    }
  });

  it('a reading due within a few seconds of the last is taken off the event loop: the last one answers meanwhile, the new one the next time', async (t) => {
    if (!existsSync('/proc/net/tcp')) return t.skip('no /proc/net/tcp here');
    const r = await freePortRange(3);
    const lp = new ListeningPorts(r, '127.0.0.1');
    assert.ok(!lp.ports()?.includes(r.first + 1));
    const firstAt = lp.readAt()!;
    const server = createServer();
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: r.first + 1 }, resolve));
    try {
      await new Promise((resolve) => setTimeout(resolve, 1100));
      assert.ok(!lp.ports()?.includes(r.first + 1), 'the last reading answers while the new one is read');
      await untilTrue('the new reading', () => lp.readAt()! > firstAt, 5000);
      assert.ok(lp.ports()?.includes(r.first + 1), 'the new reading has the listener');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
