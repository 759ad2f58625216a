// Original file: proto/s2ds.proto

import type { Long } from '@grpc/proto-loader';

export interface WanBreakCount {
  'cause'?: (string);
  'count'?: (number | string | Long);
}

export interface WanBreakCount__Output {
  'cause': (string);
  'count': (string);
}
