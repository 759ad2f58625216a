// Original file: proto/scistream.proto


export interface UpdateTargets {
  'uid'?: (string);
  'remote_listeners'?: (string)[];
  'role'?: (string);
}

export interface UpdateTargets__Output {
  'uid': (string);
  'remote_listeners': (string)[];
  'role': (string);
}
