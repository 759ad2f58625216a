// Original file: proto/scistream.proto


export interface Hello {
  'uid'?: (string);
  'prod_listeners'?: (string)[];
  'role'?: (string);
  'app_secret'?: (string);
}

export interface Hello__Output {
  'uid': (string);
  'prod_listeners': (string)[];
  'role': (string);
  'app_secret': (string);
}
