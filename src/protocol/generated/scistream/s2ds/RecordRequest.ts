// Original file: proto/s2ds.proto


export interface RecordRequest {
  'uid'?: (string);
  'record'?: (Buffer | Uint8Array | string);
}

export interface RecordRequest__Output {
  'uid': (string);
  'record': (Buffer);
}
