// Original file: proto/scistream.proto

import type { StreamCredentials as _scistream_StreamCredentials, StreamCredentials__Output as _scistream_StreamCredentials__Output } from '../scistream/StreamCredentials';

export interface UpdateTargets {
  'uid'?: (string);
  'remote_listeners'?: (string)[];
  'role'?: (string);
  'credentials'?: (_scistream_StreamCredentials | null);
  'control_secret'?: (string);
}

export interface UpdateTargets__Output {
  'uid': (string);
  'remote_listeners': (string)[];
  'role': (string);
  'credentials': (_scistream_StreamCredentials__Output | null);
  'control_secret': (string);
}
