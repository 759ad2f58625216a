import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { AgentStatus as _scistream_AgentStatus, AgentStatus__Output as _scistream_AgentStatus__Output } from './scistream/AgentStatus';
import type { AppResponse as _scistream_AppResponse, AppResponse__Output as _scistream_AppResponse__Output } from './scistream/AppResponse';
import type { Capabilities as _scistream_Capabilities, Capabilities__Output as _scistream_Capabilities__Output } from './scistream/Capabilities';
import type { CapabilitiesRequest as _scistream_CapabilitiesRequest, CapabilitiesRequest__Output as _scistream_CapabilitiesRequest__Output } from './scistream/CapabilitiesRequest';
import type { ConnectionRecord as _scistream_ConnectionRecord, ConnectionRecord__Output as _scistream_ConnectionRecord__Output } from './scistream/ConnectionRecord';
import type { ControlClient as _scistream_ControlClient, ControlDefinition as _scistream_ControlDefinition } from './scistream/Control';
import type { EndedStream as _scistream_EndedStream, EndedStream__Output as _scistream_EndedStream__Output } from './scistream/EndedStream';
import type { Hello as _scistream_Hello, Hello__Output as _scistream_Hello__Output } from './scistream/Hello';
import type { Refusal as _scistream_Refusal, Refusal__Output as _scistream_Refusal__Output } from './scistream/Refusal';
import type { Release as _scistream_Release, Release__Output as _scistream_Release__Output } from './scistream/Release';
import type { Request as _scistream_Request, Request__Output as _scistream_Request__Output } from './scistream/Request';
import type { Response as _scistream_Response, Response__Output as _scistream_Response__Output } from './scistream/Response';
import type { StatusRequest as _scistream_StatusRequest, StatusRequest__Output as _scistream_StatusRequest__Output } from './scistream/StatusRequest';
import type { StatusResponse as _scistream_StatusResponse, StatusResponse__Output as _scistream_StatusResponse__Output } from './scistream/StatusResponse';
import type { StreamCredentials as _scistream_StreamCredentials, StreamCredentials__Output as _scistream_StreamCredentials__Output } from './scistream/StreamCredentials';
import type { StreamStatus as _scistream_StreamStatus, StreamStatus__Output as _scistream_StreamStatus__Output } from './scistream/StreamStatus';
import type { UpdateTargets as _scistream_UpdateTargets, UpdateTargets__Output as _scistream_UpdateTargets__Output } from './scistream/UpdateTargets';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  scistream: {
    AgentStatus: MessageTypeDefinition<_scistream_AgentStatus, _scistream_AgentStatus__Output>
    AppResponse: MessageTypeDefinition<_scistream_AppResponse, _scistream_AppResponse__Output>
    Capabilities: MessageTypeDefinition<_scistream_Capabilities, _scistream_Capabilities__Output>
    CapabilitiesRequest: MessageTypeDefinition<_scistream_CapabilitiesRequest, _scistream_CapabilitiesRequest__Output>
    ConnectionRecord: MessageTypeDefinition<_scistream_ConnectionRecord, _scistream_ConnectionRecord__Output>
    Control: SubtypeConstructor<typeof grpc.Client, _scistream_ControlClient> & { service: _scistream_ControlDefinition }
    EndedStream: MessageTypeDefinition<_scistream_EndedStream, _scistream_EndedStream__Output>
    Hello: MessageTypeDefinition<_scistream_Hello, _scistream_Hello__Output>
    Refusal: MessageTypeDefinition<_scistream_Refusal, _scistream_Refusal__Output>
    Release: MessageTypeDefinition<_scistream_Release, _scistream_Release__Output>
    Request: MessageTypeDefinition<_scistream_Request, _scistream_Request__Output>
    Response: MessageTypeDefinition<_scistream_Response, _scistream_Response__Output>
    StatusRequest: MessageTypeDefinition<_scistream_StatusRequest, _scistream_StatusRequest__Output>
    StatusResponse: MessageTypeDefinition<_scistream_StatusResponse, _scistream_StatusResponse__Output>
    StreamCredentials: MessageTypeDefinition<_scistream_StreamCredentials, _scistream_StreamCredentials__Output>
    StreamStatus: MessageTypeDefinition<_scistream_StreamStatus, _scistream_StreamStatus__Output>
    UpdateTargets: MessageTypeDefinition<_scistream_UpdateTargets, _scistream_UpdateTargets__Output>
  }
}

