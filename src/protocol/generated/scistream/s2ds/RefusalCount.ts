// Original file: proto/s2ds.proto

import type { Long } from '@grpc/proto-loader';

export interface RefusalCount {
  'kind'?: (string);
  'count'?: (number | string | Long);
}

export interface RefusalCount__Output {
  'kind': (string);
  'count': (string);
}
