// Original file: proto/scistream.proto


export interface AppResponse {
  'message'?: (string);
  'listeners'?: (string)[];
}

export interface AppResponse__Output {
  'message': (string);
  'listeners': (string)[];
}
