// The wire contract: proto/scistream.proto, with the types generated from it by
// `npm run gen:proto` (src/protocol/generated). The Control service is built from the
// descriptor generated with them, with protobufjs/light: the same encoding and decoding
// as @grpc/proto-loader gives, without parsing the .proto at every start of a program.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import type * as ProtoLoader from '@grpc/proto-loader';
import type * as Protobuf from 'protobufjs';
import type { ProtoGrpcType } from './generated/scistream.js';
import { SCISTREAM_DESCRIPTOR } from './generated/scistream-descriptor.js';

export const PROTO_PATH = fileURLToPath(new URL('../../../proto/scistream.proto', import.meta.url));

const require = createRequire(import.meta.url);

/** How both contracts decode: field names as written, uint64 as decimal strings, enums by name, defaults filled in. */
export const DECODE_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true } as const;

/**
 * Loads a .proto of ours with @grpc/proto-loader (the agents' contract, tests), the
 * options above. proto-loader is required here, not at start-up: the clients never need it.
 */
export function loadProto<T>(path: string): T {
  const protoLoader = require('@grpc/proto-loader') as typeof ProtoLoader;
  return grpc.loadPackageDefinition(protoLoader.loadSync(path, DECODE_OPTIONS)) as unknown as T;
}

/**
 * One service of a protobufjs JSON descriptor as grpc-js takes it: the method
 * definitions @grpc/proto-loader makes (path, streaming, serializers, original name),
 * without the reflection descriptors that nothing here reads.
 */
export function serviceFromDescriptor(descriptor: Protobuf.INamespace, serviceName: string): grpc.ServiceDefinition {
  const protobuf = require('protobufjs/light.js') as typeof Protobuf;
  const root = protobuf.Root.fromJSON(descriptor);
  root.resolveAll();
  const service = root.lookupService(serviceName);
  const serializer = (type: Protobuf.Type) => (arg: object): Buffer => {
    if (Array.isArray(arg)) throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
    return type.encode(type.fromObject(arg)).finish() as Buffer;
  };
  const deserializer = (type: Protobuf.Type) => (bytes: Buffer): object => type.toObject(type.decode(bytes), DECODE_OPTIONS);
  const definition: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const method of service.methodsArray) {
    const request = method.resolvedRequestType!;
    const response = method.resolvedResponseType!;
    definition[method.name] = {
      path: `/${serviceName}/${method.name}`,
      requestStream: !!method.requestStream,
      responseStream: !!method.responseStream,
      requestSerialize: serializer(request),
      requestDeserialize: deserializer(request),
      responseSerialize: serializer(response),
      responseDeserialize: deserializer(response),
      originalName: method.name.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase()),
    };
  }
  return definition as grpc.ServiceDefinition;
}

type ControlConstructor = ProtoGrpcType['scistream']['Control'];

/** The `scistream.Control` service: its definition for servers (Control.service), its client class for clients. */
export const Control = grpc.makeClientConstructor(serviceFromDescriptor(SCISTREAM_DESCRIPTOR as unknown as Protobuf.INamespace, 'scistream.Control'), 'scistream.Control') as unknown as ControlConstructor;

export type { ControlClient, ControlHandlers } from './generated/scistream/Control.js';
export type { Request, Request__Output } from './generated/scistream/Request.js';
export type { Response, Response__Output } from './generated/scistream/Response.js';
export type { UpdateTargets, UpdateTargets__Output } from './generated/scistream/UpdateTargets.js';
export type { Release, Release__Output } from './generated/scistream/Release.js';
export type { Hello, Hello__Output } from './generated/scistream/Hello.js';
export type { AppResponse, AppResponse__Output } from './generated/scistream/AppResponse.js';

/**
 * Initial-metadata key of the application secret in the answer to req. Sent before
 * the answer itself, because a producer-side req is answered only after the Hello
 * that needs the secret.
 */
export const APP_SECRET_HEADER = 'scistream-app-secret';

/**
 * Initial-metadata key of the stream's control secret in the answer to its first req
 * (also Response.control_secret): sent early so that a client can release a producer
 * stream whose req still waits for the Hello. On req, a client that binds by secret
 * may propose the secret under the same key: then a req whose answer is lost (a
 * timeout, a dropped connection) leaves the client holding the secret all the same,
 * and its retry proves it is the requester's (retry-safe).
 */
export const CONTROL_SECRET_HEADER = 'scistream-control-secret';

/** What a proposed control secret must look like: 32 to 256 URL-safe characters (at least 192 bits as base64url). */
export const PROPOSED_SECRET = /^[A-Za-z0-9_-]{32,256}$/;

/**
 * Request-metadata key by which a client says, on req, that it will present the
 * control secret on update and release (BINDS_BY_SECRET): the stream is then bound
 * to the secret from its start. Without it (reference clients) a stream with
 * --auth none is bound to the address its req came from.
 */
export const BINDING_HEADER = 'scistream-binding';
export const BINDS_BY_SECRET = 'control-secret';

/** Marks a request whose bytes are not the rpc's protobuf message (the text says why). */
const UNDECODABLE = Symbol('undecodable request');

/**
 * The service definition with requests that do not decode handed to the handler
 * as a marker instead of failing inside grpc-js, which would answer INTERNAL (its
 * fixed answer) for what is the caller's mistake: the handler answers
 * INVALID_ARGUMENT, like any other bad input.
 */
export function tolerantService<T extends grpc.ServiceDefinition>(service: T): T {
  const methods: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service) as [string, grpc.MethodDefinition<unknown, unknown>][]) {
    methods[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return { [UNDECODABLE]: err instanceof Error ? err.message : String(err) };
        }
      },
    };
  }
  return methods as T;
}

/** Why a request could not be decoded, or undefined for a decoded request. */
export function undecodable(request: unknown): string | undefined {
  if (typeof request !== 'object' || request === null || !(UNDECODABLE in request)) return undefined;
  return String((request as { [UNDECODABLE]: unknown })[UNDECODABLE]);
}
