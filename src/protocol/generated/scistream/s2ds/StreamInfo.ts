// Original file: proto/s2ds.proto

import type { RecentConnection as _scistream_s2ds_RecentConnection, RecentConnection__Output as _scistream_s2ds_RecentConnection__Output } from '../../scistream/s2ds/RecentConnection';
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
}
