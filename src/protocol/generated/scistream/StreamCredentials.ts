// Original file: proto/scistream.proto


export interface StreamCredentials {
  'certificate'?: (string);
  'private_key'?: (string);
  'peer_certificate'?: (string);
}

export interface StreamCredentials__Output {
  'certificate': (string);
  'private_key': (string);
  'peer_certificate': (string);
}
