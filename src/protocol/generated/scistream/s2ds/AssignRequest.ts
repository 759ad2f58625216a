// Original file: proto/s2ds.proto

import type { Long } from '@grpc/proto-loader';

export interface AssignRequest {
  'uid'?: (string);
  'owner'?: (string);
  'listeners'?: (string)[];
  'record'?: (Buffer | Uint8Array | string);
  'cap_bps'?: (number | string | Long);
  'allow_from'?: (string)[];
  'protocol'?: (string);
  'shared'?: (boolean);
}

export interface AssignRequest__Output {
  'uid': (string);
  'owner': (string);
  'listeners': (string)[];
  'record': (Buffer);
  'cap_bps': (string);
  'allow_from': (string)[];
  'protocol': (string);
  'shared': (boolean);
}
