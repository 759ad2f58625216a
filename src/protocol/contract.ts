// The wire contract: proto/scistream.proto loaded at run time, with the types
// generated from it by `npm run gen:proto` (src/protocol/generated).
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/scistream.js';

export const PROTO_PATH = fileURLToPath(new URL('../../../proto/scistream.proto', import.meta.url));

const definition = protoLoader.loadSync(PROTO_PATH, {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});

const loaded = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;

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
