// Original file: proto/s2ds.proto


export interface StreamId {
  'uid'?: (string);
}

export interface StreamId__Output {
  'uid': (string);
}
