// Original file: proto/s2ds.proto


export interface Listeners {
  'listeners'?: (string)[];
}

export interface Listeners__Output {
  'listeners': (string)[];
}
