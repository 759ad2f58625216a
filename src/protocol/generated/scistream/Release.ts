// Original file: proto/scistream.proto


export interface Release {
  'uid'?: (string);
  'control_secret'?: (string);
}

export interface Release__Output {
  'uid': (string);
  'control_secret': (string);
}
