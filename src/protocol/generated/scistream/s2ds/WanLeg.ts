// Original file: proto/s2ds.proto


export interface WanLeg {
  'side'?: (string);
  'certificate'?: (string);
  'private_key'?: (string);
  'peer_certificate'?: (string);
}

export interface WanLeg__Output {
  'side': (string);
  'certificate': (string);
  'private_key': (string);
  'peer_certificate': (string);
}
