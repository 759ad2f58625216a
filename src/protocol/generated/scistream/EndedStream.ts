// Original file: proto/scistream.proto


export interface EndedStream {
  'uid'?: (string);
  'owner'?: (string);
  'why'?: (string);
  'ago_s'?: (number);
}

export interface EndedStream__Output {
  'uid': (string);
  'owner': (string);
  'why': (string);
  'ago_s': (number);
}
