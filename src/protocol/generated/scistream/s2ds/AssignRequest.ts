// Original file: proto/s2ds.proto


export interface AssignRequest {
  'uid'?: (string);
  'owner'?: (string);
  'listeners'?: (string)[];
  'record'?: (Buffer | Uint8Array | string);
}

export interface AssignRequest__Output {
  'uid': (string);
  'owner': (string);
  'listeners': (string)[];
  'record': (Buffer);
}
