// Original file: proto/s2ds.proto


export interface StartListenersRequest {
  'uid'?: (string);
  'count'?: (number);
  'record'?: (Buffer | Uint8Array | string);
}

export interface StartListenersRequest__Output {
  'uid': (string);
  'count': (number);
  'record': (Buffer);
}
