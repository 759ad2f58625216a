// Python grpcio clients in tests (a client built by another gRPC stack, as facilities'
// existing tools are): checks the Debian packages are there and generates the stubs.
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { PROTO_PATH } from '../../src/protocol/contract.js';

export const PYTHON = '/usr/bin/python3';

/** Writes scistream_pb2.py and scistream_pb2_grpc.py into `dir`; fails, saying what to install, without grpcio or protoc. */
export function generatePythonStubs(dir: string): void {
  const probe = spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf'], { encoding: 'utf8' });
  assert.equal(
    probe.status,
    0,
    `this test needs Debian's python3-grpcio, python3-protobuf, protobuf-compiler and protobuf-compiler-grpc (scripts/test-packages.sh installs them before npm test): ${probe.stderr}`,
  );
  const protoDir = fileURLToPath(new URL('.', `file://${PROTO_PATH}`));
  execFileSync('protoc', [`-I${protoDir}`, `--python_out=${dir}`, `--grpc_out=${dir}`, '--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin', PROTO_PATH]);
}
