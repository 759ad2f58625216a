// Original file: proto/scistream.proto

import type { Long } from '@grpc/proto-loader';

export interface ConnectionRecord {
  'listener'?: (string);
  'leg'?: (string);
  'peer'?: (string);
  'bytes_in'?: (number | string | Long);
  'bytes_out'?: (number | string | Long);
  'duration_ms'?: (number);
  'end'?: (string);
  'ended_at_ms'?: (number | string | Long);
}

export interface ConnectionRecord__Output {
  'listener': (string);
  'leg': (string);
  'peer': (string);
  'bytes_in': (string);
  'bytes_out': (string);
  'duration_ms': (number);
  'end': (string);
  'ended_at_ms': (string);
}
