// Original file: proto/s2ds.proto

import type { Long } from '@grpc/proto-loader';

export interface RecentConnection {
  'listener'?: (string);
  'leg'?: (string);
  'peer'?: (string);
  'bytes_in'?: (number | string | Long);
  'bytes_out'?: (number | string | Long);
  'duration_ms'?: (number);
  'end'?: (string);
  'ms_since_end'?: (number | string | Long);
}

export interface RecentConnection__Output {
  'listener': (string);
  'leg': (string);
  'peer': (string);
  'bytes_in': (string);
  'bytes_out': (string);
  'duration_ms': (number);
  'end': (string);
  'ms_since_end': (string);
}
