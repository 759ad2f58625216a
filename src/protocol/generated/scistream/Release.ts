// Original file: proto/scistream.proto


export interface Release {
  'uid'?: (string);
}

export interface Release__Output {
  'uid': (string);
}
