// Original file: proto/s2ds.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { AgentHealth as _scistream_s2ds_AgentHealth, AgentHealth__Output as _scistream_s2ds_AgentHealth__Output } from '../../scistream/s2ds/AgentHealth';
import type { AssignRequest as _scistream_s2ds_AssignRequest, AssignRequest__Output as _scistream_s2ds_AssignRequest__Output } from '../../scistream/s2ds/AssignRequest';
import type { Empty as _scistream_s2ds_Empty, Empty__Output as _scistream_s2ds_Empty__Output } from '../../scistream/s2ds/Empty';
import type { Listeners as _scistream_s2ds_Listeners, Listeners__Output as _scistream_s2ds_Listeners__Output } from '../../scistream/s2ds/Listeners';
import type { RecordRequest as _scistream_s2ds_RecordRequest, RecordRequest__Output as _scistream_s2ds_RecordRequest__Output } from '../../scistream/s2ds/RecordRequest';
import type { SetTargetsRequest as _scistream_s2ds_SetTargetsRequest, SetTargetsRequest__Output as _scistream_s2ds_SetTargetsRequest__Output } from '../../scistream/s2ds/SetTargetsRequest';
import type { SpareRelease as _scistream_s2ds_SpareRelease, SpareRelease__Output as _scistream_s2ds_SpareRelease__Output } from '../../scistream/s2ds/SpareRelease';
import type { SpareRequest as _scistream_s2ds_SpareRequest, SpareRequest__Output as _scistream_s2ds_SpareRequest__Output } from '../../scistream/s2ds/SpareRequest';
import type { StartListenersRequest as _scistream_s2ds_StartListenersRequest, StartListenersRequest__Output as _scistream_s2ds_StartListenersRequest__Output } from '../../scistream/s2ds/StartListenersRequest';
import type { StreamId as _scistream_s2ds_StreamId, StreamId__Output as _scistream_s2ds_StreamId__Output } from '../../scistream/s2ds/StreamId';
import type { StreamList as _scistream_s2ds_StreamList, StreamList__Output as _scistream_s2ds_StreamList__Output } from '../../scistream/s2ds/StreamList';

export interface AgentClient extends grpc.Client {
  AssignSpares(argument: _scistream_s2ds_AssignRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  AssignSpares(argument: _scistream_s2ds_AssignRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  AssignSpares(argument: _scistream_s2ds_AssignRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  AssignSpares(argument: _scistream_s2ds_AssignRequest, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  assignSpares(argument: _scistream_s2ds_AssignRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  assignSpares(argument: _scistream_s2ds_AssignRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  assignSpares(argument: _scistream_s2ds_AssignRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  assignSpares(argument: _scistream_s2ds_AssignRequest, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  
  Health(argument: _scistream_s2ds_Empty, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_AgentHealth__Output>): grpc.ClientUnaryCall;
  Health(argument: _scistream_s2ds_Empty, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_AgentHealth__Output>): grpc.ClientUnaryCall;
  Health(argument: _scistream_s2ds_Empty, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_AgentHealth__Output>): grpc.ClientUnaryCall;
  Health(argument: _scistream_s2ds_Empty, callback: grpc.requestCallback<_scistream_s2ds_AgentHealth__Output>): grpc.ClientUnaryCall;
  health(argument: _scistream_s2ds_Empty, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_AgentHealth__Output>): grpc.ClientUnaryCall;
  health(argument: _scistream_s2ds_Empty, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_AgentHealth__Output>): grpc.ClientUnaryCall;
  health(argument: _scistream_s2ds_Empty, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_AgentHealth__Output>): grpc.ClientUnaryCall;
  health(argument: _scistream_s2ds_Empty, callback: grpc.requestCallback<_scistream_s2ds_AgentHealth__Output>): grpc.ClientUnaryCall;
  
  ListStreams(argument: _scistream_s2ds_Empty, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_StreamList__Output>): grpc.ClientUnaryCall;
  ListStreams(argument: _scistream_s2ds_Empty, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_StreamList__Output>): grpc.ClientUnaryCall;
  ListStreams(argument: _scistream_s2ds_Empty, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_StreamList__Output>): grpc.ClientUnaryCall;
  ListStreams(argument: _scistream_s2ds_Empty, callback: grpc.requestCallback<_scistream_s2ds_StreamList__Output>): grpc.ClientUnaryCall;
  listStreams(argument: _scistream_s2ds_Empty, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_StreamList__Output>): grpc.ClientUnaryCall;
  listStreams(argument: _scistream_s2ds_Empty, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_StreamList__Output>): grpc.ClientUnaryCall;
  listStreams(argument: _scistream_s2ds_Empty, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_StreamList__Output>): grpc.ClientUnaryCall;
  listStreams(argument: _scistream_s2ds_Empty, callback: grpc.requestCallback<_scistream_s2ds_StreamList__Output>): grpc.ClientUnaryCall;
  
  Release(argument: _scistream_s2ds_StreamId, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  Release(argument: _scistream_s2ds_StreamId, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  Release(argument: _scistream_s2ds_StreamId, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  Release(argument: _scistream_s2ds_StreamId, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  release(argument: _scistream_s2ds_StreamId, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  release(argument: _scistream_s2ds_StreamId, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  release(argument: _scistream_s2ds_StreamId, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  release(argument: _scistream_s2ds_StreamId, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  
  ReleaseSpares(argument: _scistream_s2ds_SpareRelease, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  ReleaseSpares(argument: _scistream_s2ds_SpareRelease, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  ReleaseSpares(argument: _scistream_s2ds_SpareRelease, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  ReleaseSpares(argument: _scistream_s2ds_SpareRelease, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  releaseSpares(argument: _scistream_s2ds_SpareRelease, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  releaseSpares(argument: _scistream_s2ds_SpareRelease, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  releaseSpares(argument: _scistream_s2ds_SpareRelease, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  releaseSpares(argument: _scistream_s2ds_SpareRelease, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  
  ReserveSpares(argument: _scistream_s2ds_SpareRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  ReserveSpares(argument: _scistream_s2ds_SpareRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  ReserveSpares(argument: _scistream_s2ds_SpareRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  ReserveSpares(argument: _scistream_s2ds_SpareRequest, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  reserveSpares(argument: _scistream_s2ds_SpareRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  reserveSpares(argument: _scistream_s2ds_SpareRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  reserveSpares(argument: _scistream_s2ds_SpareRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  reserveSpares(argument: _scistream_s2ds_SpareRequest, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  
  SetRecord(argument: _scistream_s2ds_RecordRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  SetRecord(argument: _scistream_s2ds_RecordRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  SetRecord(argument: _scistream_s2ds_RecordRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  SetRecord(argument: _scistream_s2ds_RecordRequest, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  setRecord(argument: _scistream_s2ds_RecordRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  setRecord(argument: _scistream_s2ds_RecordRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  setRecord(argument: _scistream_s2ds_RecordRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  setRecord(argument: _scistream_s2ds_RecordRequest, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  
  SetTargets(argument: _scistream_s2ds_SetTargetsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  SetTargets(argument: _scistream_s2ds_SetTargetsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  SetTargets(argument: _scistream_s2ds_SetTargetsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  SetTargets(argument: _scistream_s2ds_SetTargetsRequest, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  setTargets(argument: _scistream_s2ds_SetTargetsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  setTargets(argument: _scistream_s2ds_SetTargetsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  setTargets(argument: _scistream_s2ds_SetTargetsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  setTargets(argument: _scistream_s2ds_SetTargetsRequest, callback: grpc.requestCallback<_scistream_s2ds_Empty__Output>): grpc.ClientUnaryCall;
  
  StartListeners(argument: _scistream_s2ds_StartListenersRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  StartListeners(argument: _scistream_s2ds_StartListenersRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  StartListeners(argument: _scistream_s2ds_StartListenersRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  StartListeners(argument: _scistream_s2ds_StartListenersRequest, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  startListeners(argument: _scistream_s2ds_StartListenersRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  startListeners(argument: _scistream_s2ds_StartListenersRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  startListeners(argument: _scistream_s2ds_StartListenersRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  startListeners(argument: _scistream_s2ds_StartListenersRequest, callback: grpc.requestCallback<_scistream_s2ds_Listeners__Output>): grpc.ClientUnaryCall;
  
}

export interface AgentHandlers extends grpc.UntypedServiceImplementation {
  AssignSpares: grpc.handleUnaryCall<_scistream_s2ds_AssignRequest__Output, _scistream_s2ds_Empty>;
  
  Health: grpc.handleUnaryCall<_scistream_s2ds_Empty__Output, _scistream_s2ds_AgentHealth>;
  
  ListStreams: grpc.handleUnaryCall<_scistream_s2ds_Empty__Output, _scistream_s2ds_StreamList>;
  
  Release: grpc.handleUnaryCall<_scistream_s2ds_StreamId__Output, _scistream_s2ds_Empty>;
  
  ReleaseSpares: grpc.handleUnaryCall<_scistream_s2ds_SpareRelease__Output, _scistream_s2ds_Empty>;
  
  ReserveSpares: grpc.handleUnaryCall<_scistream_s2ds_SpareRequest__Output, _scistream_s2ds_Listeners>;
  
  SetRecord: grpc.handleUnaryCall<_scistream_s2ds_RecordRequest__Output, _scistream_s2ds_Empty>;
  
  SetTargets: grpc.handleUnaryCall<_scistream_s2ds_SetTargetsRequest__Output, _scistream_s2ds_Empty>;
  
  StartListeners: grpc.handleUnaryCall<_scistream_s2ds_StartListenersRequest__Output, _scistream_s2ds_Listeners>;
  
}

export interface AgentDefinition extends grpc.ServiceDefinition {
  AssignSpares: MethodDefinition<_scistream_s2ds_AssignRequest, _scistream_s2ds_Empty, _scistream_s2ds_AssignRequest__Output, _scistream_s2ds_Empty__Output>
  Health: MethodDefinition<_scistream_s2ds_Empty, _scistream_s2ds_AgentHealth, _scistream_s2ds_Empty__Output, _scistream_s2ds_AgentHealth__Output>
  ListStreams: MethodDefinition<_scistream_s2ds_Empty, _scistream_s2ds_StreamList, _scistream_s2ds_Empty__Output, _scistream_s2ds_StreamList__Output>
  Release: MethodDefinition<_scistream_s2ds_StreamId, _scistream_s2ds_Empty, _scistream_s2ds_StreamId__Output, _scistream_s2ds_Empty__Output>
  ReleaseSpares: MethodDefinition<_scistream_s2ds_SpareRelease, _scistream_s2ds_Empty, _scistream_s2ds_SpareRelease__Output, _scistream_s2ds_Empty__Output>
  ReserveSpares: MethodDefinition<_scistream_s2ds_SpareRequest, _scistream_s2ds_Listeners, _scistream_s2ds_SpareRequest__Output, _scistream_s2ds_Listeners__Output>
  SetRecord: MethodDefinition<_scistream_s2ds_RecordRequest, _scistream_s2ds_Empty, _scistream_s2ds_RecordRequest__Output, _scistream_s2ds_Empty__Output>
  SetTargets: MethodDefinition<_scistream_s2ds_SetTargetsRequest, _scistream_s2ds_Empty, _scistream_s2ds_SetTargetsRequest__Output, _scistream_s2ds_Empty__Output>
  StartListeners: MethodDefinition<_scistream_s2ds_StartListenersRequest, _scistream_s2ds_Listeners, _scistream_s2ds_StartListenersRequest__Output, _scistream_s2ds_Listeners__Output>
}
