// Original file: proto/s2ds.proto


export interface SpareRequest {
  'owner'?: (string);
  'count'?: (number);
}

export interface SpareRequest__Output {
  'owner': (string);
  'count': (number);
}
