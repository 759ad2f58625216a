// Original file: proto/scistream.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { AppResponse as _scistream_AppResponse, AppResponse__Output as _scistream_AppResponse__Output } from '../scistream/AppResponse';
import type { Capabilities as _scistream_Capabilities, Capabilities__Output as _scistream_Capabilities__Output } from '../scistream/Capabilities';
import type { CapabilitiesRequest as _scistream_CapabilitiesRequest, CapabilitiesRequest__Output as _scistream_CapabilitiesRequest__Output } from '../scistream/CapabilitiesRequest';
import type { Hello as _scistream_Hello, Hello__Output as _scistream_Hello__Output } from '../scistream/Hello';
import type { Release as _scistream_Release, Release__Output as _scistream_Release__Output } from '../scistream/Release';
import type { Request as _scistream_Request, Request__Output as _scistream_Request__Output } from '../scistream/Request';
import type { Response as _scistream_Response, Response__Output as _scistream_Response__Output } from '../scistream/Response';
import type { StatusRequest as _scistream_StatusRequest, StatusRequest__Output as _scistream_StatusRequest__Output } from '../scistream/StatusRequest';
import type { StatusResponse as _scistream_StatusResponse, StatusResponse__Output as _scistream_StatusResponse__Output } from '../scistream/StatusResponse';
import type { UpdateTargets as _scistream_UpdateTargets, UpdateTargets__Output as _scistream_UpdateTargets__Output } from '../scistream/UpdateTargets';

export interface ControlClient extends grpc.Client {
  capabilities(argument: _scistream_CapabilitiesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_Capabilities__Output>): grpc.ClientUnaryCall;
  capabilities(argument: _scistream_CapabilitiesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_Capabilities__Output>): grpc.ClientUnaryCall;
  capabilities(argument: _scistream_CapabilitiesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_Capabilities__Output>): grpc.ClientUnaryCall;
  capabilities(argument: _scistream_CapabilitiesRequest, callback: grpc.requestCallback<_scistream_Capabilities__Output>): grpc.ClientUnaryCall;
  
  hello(argument: _scistream_Hello, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_AppResponse__Output>): grpc.ClientUnaryCall;
  hello(argument: _scistream_Hello, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_AppResponse__Output>): grpc.ClientUnaryCall;
  hello(argument: _scistream_Hello, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_AppResponse__Output>): grpc.ClientUnaryCall;
  hello(argument: _scistream_Hello, callback: grpc.requestCallback<_scistream_AppResponse__Output>): grpc.ClientUnaryCall;
  
  release(argument: _scistream_Release, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_Response__Output>): grpc.ClientUnaryCall;
  release(argument: _scistream_Release, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_Response__Output>): grpc.ClientUnaryCall;
  release(argument: _scistream_Release, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_Response__Output>): grpc.ClientUnaryCall;
  release(argument: _scistream_Release, callback: grpc.requestCallback<_scistream_Response__Output>): grpc.ClientUnaryCall;
  
  req(argument: _scistream_Request, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_Response__Output>): grpc.ClientUnaryCall;
  req(argument: _scistream_Request, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_Response__Output>): grpc.ClientUnaryCall;
  req(argument: _scistream_Request, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_Response__Output>): grpc.ClientUnaryCall;
  req(argument: _scistream_Request, callback: grpc.requestCallback<_scistream_Response__Output>): grpc.ClientUnaryCall;
  
  status(argument: _scistream_StatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _scistream_StatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _scistream_StatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_StatusResponse__Output>): grpc.ClientUnaryCall;
  status(argument: _scistream_StatusRequest, callback: grpc.requestCallback<_scistream_StatusResponse__Output>): grpc.ClientUnaryCall;
  
  update(argument: _scistream_UpdateTargets, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_Response__Output>): grpc.ClientUnaryCall;
  update(argument: _scistream_UpdateTargets, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_Response__Output>): grpc.ClientUnaryCall;
  update(argument: _scistream_UpdateTargets, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_Response__Output>): grpc.ClientUnaryCall;
  update(argument: _scistream_UpdateTargets, callback: grpc.requestCallback<_scistream_Response__Output>): grpc.ClientUnaryCall;
  
}

export interface ControlHandlers extends grpc.UntypedServiceImplementation {
  capabilities: grpc.handleUnaryCall<_scistream_CapabilitiesRequest__Output, _scistream_Capabilities>;
  
  hello: grpc.handleUnaryCall<_scistream_Hello__Output, _scistream_AppResponse>;
  
  release: grpc.handleUnaryCall<_scistream_Release__Output, _scistream_Response>;
  
  req: grpc.handleUnaryCall<_scistream_Request__Output, _scistream_Response>;
  
  status: grpc.handleUnaryCall<_scistream_StatusRequest__Output, _scistream_StatusResponse>;
  
  update: grpc.handleUnaryCall<_scistream_UpdateTargets__Output, _scistream_Response>;
  
}

export interface ControlDefinition extends grpc.ServiceDefinition {
  capabilities: MethodDefinition<_scistream_CapabilitiesRequest, _scistream_Capabilities, _scistream_CapabilitiesRequest__Output, _scistream_Capabilities__Output>
  hello: MethodDefinition<_scistream_Hello, _scistream_AppResponse, _scistream_Hello__Output, _scistream_AppResponse__Output>
  release: MethodDefinition<_scistream_Release, _scistream_Response, _scistream_Release__Output, _scistream_Response__Output>
  req: MethodDefinition<_scistream_Request, _scistream_Response, _scistream_Request__Output, _scistream_Response__Output>
  status: MethodDefinition<_scistream_StatusRequest, _scistream_StatusResponse, _scistream_StatusRequest__Output, _scistream_StatusResponse__Output>
  update: MethodDefinition<_scistream_UpdateTargets, _scistream_Response, _scistream_UpdateTargets__Output, _scistream_Response__Output>
}
