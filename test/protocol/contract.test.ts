// The Control service built from the generated descriptor (protobufjs/light) against
// the one @grpc/proto-loader makes from proto/scistream.proto: same descriptor, same
// bytes on the wire, same decoded objects, same method definitions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as grpc from '@grpc/grpc-js';
import { Control, PROTO_PATH, loadProto } from '../../src/protocol/contract.js';
import { SCISTREAM_DESCRIPTOR } from '../../src/protocol/generated/scistream-descriptor.js';

type Field = { type: string; rule?: string };
type Descriptor = { nested: { scistream: { nested: Record<string, { fields?: Record<string, Field> }> } } };

test('the generated descriptor is what proto/scistream.proto says (else: npm run gen:proto)', async () => {
  const script = new URL('../../../scripts/gen-descriptor.mjs', import.meta.url).href;
  const { descriptorOf } = (await import(script)) as { descriptorOf: (path: string) => unknown };
  assert.deepEqual(JSON.parse(JSON.stringify(SCISTREAM_DESCRIPTOR)), descriptorOf(PROTO_PATH));
});

const types = (SCISTREAM_DESCRIPTOR as unknown as Descriptor).nested.scistream.nested;

/** A message of `typeName` with every field set, repeated fields twice, at their extremes. */
function sample(typeName: string, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(types[typeName]!.fields ?? {})) {
    const one = (i: number): unknown => {
      switch (f.type) {
        case 'string':
          return `${name}-${i}-é✓`;
        case 'bool':
          return true;
        case 'int32':
          return i === 0 ? -2147483648 : 2147483647;
        case 'uint32':
          return 4294967295 - i;
        case 'uint64':
          return i === 0 ? '18446744073709551615' : '9007199254740993';
        default:
          return depth < 3 ? sample(f.type, depth + 1) : {};
      }
    };
    out[name] = f.rule === 'repeated' ? [one(0), one(1)] : one(0);
  }
  return out;
}

test('each rpc: same path, streaming and name, same bytes and same decoded messages as proto-loader', () => {
  const reference = loadProto<{ scistream: { Control: grpc.ServiceClientConstructor } }>(PROTO_PATH).scistream.Control.service;
  const ours = Control.service as unknown as grpc.ServiceDefinition;
  assert.deepEqual(Object.keys(ours).sort(), Object.keys(reference).sort());
  const methodTypes: Record<string, [string, string]> = {};
  const svc = (SCISTREAM_DESCRIPTOR as unknown as { nested: { scistream: { nested: { Control: { methods: Record<string, { requestType: string; responseType: string }> } } } } }).nested.scistream.nested.Control.methods;
  for (const [name, m] of Object.entries(svc)) methodTypes[name] = [m.requestType, m.responseType];
  for (const [name, ref] of Object.entries(reference)) {
    const m = ours[name]!;
    assert.equal(m.path, ref.path);
    assert.equal(m.requestStream, ref.requestStream);
    assert.equal(m.responseStream, ref.responseStream);
    assert.equal(m.originalName, ref.originalName);
    const [reqType, resType] = methodTypes[name]!;
    for (const [type, ser, refSer, de, refDe] of [
      [reqType, m.requestSerialize, ref.requestSerialize, m.requestDeserialize, ref.requestDeserialize],
      [resType, m.responseSerialize, ref.responseSerialize, m.responseDeserialize, ref.responseDeserialize],
    ] as const) {
      for (const msg of [sample(type), {}]) {
        const bytes = ser(msg);
        assert.deepEqual(bytes, refSer(msg), `${name}: ${type} encodes as proto-loader's does`);
        assert.deepEqual(de(bytes), refDe(bytes), `${name}: ${type} decodes as proto-loader's does`);
      }
      // Bytes that are no message fail on both, with the same words (tolerantService relays them).
      const junk = Buffer.from([0x08]); // a field tag, then nothing
      assert.throws(() => de(junk), (err: Error) => {
        assert.throws(() => refDe(junk), { message: err.message });
        return true;
      });
    }
  }
});
