import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { AgentClient as _scistream_s2ds_AgentClient, AgentDefinition as _scistream_s2ds_AgentDefinition } from './scistream/s2ds/Agent';
import type { AgentHealth as _scistream_s2ds_AgentHealth, AgentHealth__Output as _scistream_s2ds_AgentHealth__Output } from './scistream/s2ds/AgentHealth';
import type { AssignRequest as _scistream_s2ds_AssignRequest, AssignRequest__Output as _scistream_s2ds_AssignRequest__Output } from './scistream/s2ds/AssignRequest';
import type { Empty as _scistream_s2ds_Empty, Empty__Output as _scistream_s2ds_Empty__Output } from './scistream/s2ds/Empty';
import type { Listeners as _scistream_s2ds_Listeners, Listeners__Output as _scistream_s2ds_Listeners__Output } from './scistream/s2ds/Listeners';
import type { RecentConnection as _scistream_s2ds_RecentConnection, RecentConnection__Output as _scistream_s2ds_RecentConnection__Output } from './scistream/s2ds/RecentConnection';
import type { RecordRequest as _scistream_s2ds_RecordRequest, RecordRequest__Output as _scistream_s2ds_RecordRequest__Output } from './scistream/s2ds/RecordRequest';
import type { RefusalCount as _scistream_s2ds_RefusalCount, RefusalCount__Output as _scistream_s2ds_RefusalCount__Output } from './scistream/s2ds/RefusalCount';
import type { SetTargetsRequest as _scistream_s2ds_SetTargetsRequest, SetTargetsRequest__Output as _scistream_s2ds_SetTargetsRequest__Output } from './scistream/s2ds/SetTargetsRequest';
import type { SpareRelease as _scistream_s2ds_SpareRelease, SpareRelease__Output as _scistream_s2ds_SpareRelease__Output } from './scistream/s2ds/SpareRelease';
import type { SpareRequest as _scistream_s2ds_SpareRequest, SpareRequest__Output as _scistream_s2ds_SpareRequest__Output } from './scistream/s2ds/SpareRequest';
import type { StartListenersRequest as _scistream_s2ds_StartListenersRequest, StartListenersRequest__Output as _scistream_s2ds_StartListenersRequest__Output } from './scistream/s2ds/StartListenersRequest';
import type { StreamId as _scistream_s2ds_StreamId, StreamId__Output as _scistream_s2ds_StreamId__Output } from './scistream/s2ds/StreamId';
import type { StreamInfo as _scistream_s2ds_StreamInfo, StreamInfo__Output as _scistream_s2ds_StreamInfo__Output } from './scistream/s2ds/StreamInfo';
import type { StreamList as _scistream_s2ds_StreamList, StreamList__Output as _scistream_s2ds_StreamList__Output } from './scistream/s2ds/StreamList';
import type { WanBreakCount as _scistream_s2ds_WanBreakCount, WanBreakCount__Output as _scistream_s2ds_WanBreakCount__Output } from './scistream/s2ds/WanBreakCount';
import type { WanLeg as _scistream_s2ds_WanLeg, WanLeg__Output as _scistream_s2ds_WanLeg__Output } from './scistream/s2ds/WanLeg';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  scistream: {
    s2ds: {
      Agent: SubtypeConstructor<typeof grpc.Client, _scistream_s2ds_AgentClient> & { service: _scistream_s2ds_AgentDefinition }
      AgentHealth: MessageTypeDefinition<_scistream_s2ds_AgentHealth, _scistream_s2ds_AgentHealth__Output>
      AssignRequest: MessageTypeDefinition<_scistream_s2ds_AssignRequest, _scistream_s2ds_AssignRequest__Output>
      Empty: MessageTypeDefinition<_scistream_s2ds_Empty, _scistream_s2ds_Empty__Output>
      Listeners: MessageTypeDefinition<_scistream_s2ds_Listeners, _scistream_s2ds_Listeners__Output>
      RecentConnection: MessageTypeDefinition<_scistream_s2ds_RecentConnection, _scistream_s2ds_RecentConnection__Output>
      RecordRequest: MessageTypeDefinition<_scistream_s2ds_RecordRequest, _scistream_s2ds_RecordRequest__Output>
      RefusalCount: MessageTypeDefinition<_scistream_s2ds_RefusalCount, _scistream_s2ds_RefusalCount__Output>
      SetTargetsRequest: MessageTypeDefinition<_scistream_s2ds_SetTargetsRequest, _scistream_s2ds_SetTargetsRequest__Output>
      SpareRelease: MessageTypeDefinition<_scistream_s2ds_SpareRelease, _scistream_s2ds_SpareRelease__Output>
      SpareRequest: MessageTypeDefinition<_scistream_s2ds_SpareRequest, _scistream_s2ds_SpareRequest__Output>
      StartListenersRequest: MessageTypeDefinition<_scistream_s2ds_StartListenersRequest, _scistream_s2ds_StartListenersRequest__Output>
      StreamId: MessageTypeDefinition<_scistream_s2ds_StreamId, _scistream_s2ds_StreamId__Output>
      StreamInfo: MessageTypeDefinition<_scistream_s2ds_StreamInfo, _scistream_s2ds_StreamInfo__Output>
      StreamList: MessageTypeDefinition<_scistream_s2ds_StreamList, _scistream_s2ds_StreamList__Output>
      WanBreakCount: MessageTypeDefinition<_scistream_s2ds_WanBreakCount, _scistream_s2ds_WanBreakCount__Output>
      WanLeg: MessageTypeDefinition<_scistream_s2ds_WanLeg, _scistream_s2ds_WanLeg__Output>
    }
  }
}

