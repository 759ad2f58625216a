// Original file: proto/scistream.proto

import type { ConnectionRecord as _scistream_ConnectionRecord, ConnectionRecord__Output as _scistream_ConnectionRecord__Output } from '../scistream/ConnectionRecord';
import type { Refusal as _scistream_Refusal, Refusal__Output as _scistream_Refusal__Output } from '../scistream/Refusal';
import type { Long } from '@grpc/proto-loader';

export interface StreamStatus {
  'uid'?: (string);
  'role'?: (string);
  'num_conn'?: (number);
  'rate'?: (number);
  'state'?: (string);
  'listeners'?: (string)[];
  'prod_listeners'?: (string)[];
  'targets'?: (string)[];
  'bytes_to_target'?: (number | string | Long);
  'bytes_from_target'?: (number | string | Long);
  'active_connections'?: (number);
  'waiting_connections'?: (number);
  'accepted_connections'?: (number);
  'owner'?: (string);
  'lease_remaining_s'?: (number);
  'refused_connections'?: (number);
  'age_s'?: (number);
  'to_target_bps'?: (number | string | Long);
  'from_target_bps'?: (number | string | Long);
  'cap_bps'?: (number | string | Long);
  'broken_reason'?: (string);
  'expires_in_s'?: (number);
  'releasing_on'?: (string)[];
  'redacted'?: (boolean);
  'allow_from'?: (string)[];
  'standing'?: (boolean);
  'recent_connections'?: (_scistream_ConnectionRecord)[];
  'protocol'?: (string);
  'datagrams_to_target'?: (number | string | Long);
  'datagrams_from_target'?: (number | string | Long);
  'datagram_drops'?: (_scistream_Refusal)[];
  'udp_flows'?: (number);
  'udp_flows_opened'?: (number | string | Long);
}

export interface StreamStatus__Output {
  'uid': (string);
  'role': (string);
  'num_conn': (number);
  'rate': (number);
  'state': (string);
  'listeners': (string)[];
  'prod_listeners': (string)[];
  'targets': (string)[];
  'bytes_to_target': (string);
  'bytes_from_target': (string);
  'active_connections': (number);
  'waiting_connections': (number);
  'accepted_connections': (number);
  'owner': (string);
  'lease_remaining_s': (number);
  'refused_connections': (number);
  'age_s': (number);
  'to_target_bps': (string);
  'from_target_bps': (string);
  'cap_bps': (string);
  'broken_reason': (string);
  'expires_in_s': (number);
  'releasing_on': (string)[];
  'redacted': (boolean);
  'allow_from': (string)[];
  'standing': (boolean);
  'recent_connections': (_scistream_ConnectionRecord__Output)[];
  'protocol': (string);
  'datagrams_to_target': (string);
  'datagrams_from_target': (string);
  'datagram_drops': (_scistream_Refusal__Output)[];
  'udp_flows': (number);
  'udp_flows_opened': (string);
}
