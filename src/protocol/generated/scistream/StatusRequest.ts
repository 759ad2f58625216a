// Original file: proto/scistream.proto


export interface StatusRequest {
  'uid'?: (string);
  'control_secrets'?: (string)[];
}

export interface StatusRequest__Output {
  'uid': (string);
  'control_secrets': (string)[];
}
