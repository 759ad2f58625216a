// Original file: proto/scistream.proto

import type { Long } from '@grpc/proto-loader';

export interface Refusal {
  'kind'?: (string);
  'count'?: (number | string | Long);
}

export interface Refusal__Output {
  'kind': (string);
  'count': (string);
}
