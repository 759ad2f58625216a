// Original file: proto/s2ds.proto


export interface SpareRelease {
  'owner'?: (string);
  'others'?: (boolean);
  'listeners'?: (string)[];
}

export interface SpareRelease__Output {
  'owner': (string);
  'others': (boolean);
  'listeners': (string)[];
}
