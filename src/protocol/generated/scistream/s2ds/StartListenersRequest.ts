// Original file: proto/s2ds.proto

import type { Long } from '@grpc/proto-loader';

export interface StartListenersRequest {
  'uid'?: (string);
  'count'?: (number);
  'record'?: (Buffer | Uint8Array | string);
  'cap_bps'?: (number | string | Long);
  'ports'?: (number)[];
  'allow_from'?: (string)[];
  'protocol'?: (string);
  'join_ports'?: (number)[];
  'shared'?: (boolean);
}

export interface StartListenersRequest__Output {
  'uid': (string);
  'count': (number);
  'record': (Buffer);
  'cap_bps': (string);
  'ports': (number)[];
  'allow_from': (string)[];
  'protocol': (string);
  'join_ports': (number)[];
  'shared': (boolean);
}
