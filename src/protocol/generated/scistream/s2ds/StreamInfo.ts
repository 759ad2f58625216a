// Original file: proto/s2ds.proto

import type { RecentConnection as _scistream_s2ds_RecentConnection, RecentConnection__Output as _scistream_s2ds_RecentConnection__Output } from '../../scistream/s2ds/RecentConnection';
import type { RefusalCount as _scistream_s2ds_RefusalCount, RefusalCount__Output as _scistream_s2ds_RefusalCount__Output } from '../../scistream/s2ds/RefusalCount';
import type { Long } from '@grpc/proto-loader';

export interface StreamInfo {
  'uid'?: (string);
  'listeners'?: (string)[];
  'targets'?: (string)[];
  'record'?: (Buffer | Uint8Array | string);
  'encrypted'?: (boolean);
  'active_connections'?: (number);
  'waiting_connections'?: (number);
  'accepted_connections'?: (number);
  'refused_connections'?: (number);
  'bytes_to_target'?: (number | string | Long);
  'bytes_from_target'?: (number | string | Long);
  'clean_ends'?: (number);
  'abnormal_ends'?: (number);
  'ms_since_last_end'?: (number | string | Long);
  'last_end_abnormal'?: (boolean);
  'last_end_error'?: (string);
  'recent_connections'?: (_scistream_s2ds_RecentConnection)[];
  'protocol'?: (string);
  'datagrams_to_target'?: (number | string | Long);
  'datagrams_from_target'?: (number | string | Long);
  'datagram_drops'?: (_scistream_s2ds_RefusalCount)[];
  'udp_flows'?: (number);
  'udp_flows_opened'?: (number | string | Long);
}

export interface StreamInfo__Output {
  'uid': (string);
  'listeners': (string)[];
  'targets': (string)[];
  'record': (Buffer);
  'encrypted': (boolean);
  'active_connections': (number);
  'waiting_connections': (number);
  'accepted_connections': (number);
  'refused_connections': (number);
  'bytes_to_target': (string);
  'bytes_from_target': (string);
  'clean_ends': (number);
  'abnormal_ends': (number);
  'ms_since_last_end': (string);
  'last_end_abnormal': (boolean);
  'last_end_error': (string);
  'recent_connections': (_scistream_s2ds_RecentConnection__Output)[];
  'protocol': (string);
  'datagrams_to_target': (string);
  'datagrams_from_target': (string);
  'datagram_drops': (_scistream_s2ds_RefusalCount__Output)[];
  'udp_flows': (number);
  'udp_flows_opened': (string);
}
