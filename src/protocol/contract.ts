// The wire contract: proto/scistream.proto loaded at run time, with the types
// generated from it by `npm run gen:proto` (src/protocol/generated).
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/scistream.js';

export const PROTO_PATH = fileURLToPath(new URL('../../../proto/scistream.proto', import.meta.url));

/**
 * Loads a .proto of ours the one way both contracts are loaded: field names as
 * written, uint64 as decimal strings, defaults filled in.
 */
export function loadProto<T>(path: string): T {
  const definition = protoLoader.loadSync(path, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  return grpc.loadPackageDefinition(definition) as unknown as T;
}

const loaded = loadProto<ProtoGrpcType>(PROTO_PATH);

/** The `scistream.Control` service: its definition for servers, its client class for clients. */
export const Control = loaded.scistream.Control;

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
