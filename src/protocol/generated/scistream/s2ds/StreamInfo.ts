// Original file: proto/s2ds.proto

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
}
