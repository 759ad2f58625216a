// Original file: proto/scistream.proto

import type { StreamStatus as _scistream_StreamStatus, StreamStatus__Output as _scistream_StreamStatus__Output } from '../scistream/StreamStatus';
import type { Refusal as _scistream_Refusal, Refusal__Output as _scistream_Refusal__Output } from '../scistream/Refusal';
import type { AgentStatus as _scistream_AgentStatus, AgentStatus__Output as _scistream_AgentStatus__Output } from '../scistream/AgentStatus';
import type { EndedStream as _scistream_EndedStream, EndedStream__Output as _scistream_EndedStream__Output } from '../scistream/EndedStream';
import type { Long } from '@grpc/proto-loader';

export interface StatusResponse {
  'streams'?: (_scistream_StreamStatus)[];
  'reserved_ports'?: (number);
  'free_ports'?: (number);
  'refusals'?: (_scistream_Refusal)[];
  'agents'?: (_scistream_AgentStatus)[];
  'ended'?: (_scistream_EndedStream)[];
  'rate_policy'?: (string);
  'capacity_bps'?: (number | string | Long);
  'reserved_bps'?: (number | string | Long);
}

export interface StatusResponse__Output {
  'streams': (_scistream_StreamStatus__Output)[];
  'reserved_ports': (number);
  'free_ports': (number);
  'refusals': (_scistream_Refusal__Output)[];
  'agents': (_scistream_AgentStatus__Output)[];
  'ended': (_scistream_EndedStream__Output)[];
  'rate_policy': (string);
  'capacity_bps': (string);
  'reserved_bps': (string);
}
