// Original file: proto/scistream.proto


export interface StatusRequest {
  'uid'?: (string);
}

export interface StatusRequest__Output {
  'uid': (string);
}
