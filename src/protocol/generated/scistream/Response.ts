// Original file: proto/scistream.proto


export interface Response {
  'listeners'?: (string)[];
  'prod_listeners'?: (string)[];
  'app_secret'?: (string);
  'control_secret'?: (string);
}

export interface Response__Output {
  'listeners': (string)[];
  'prod_listeners': (string)[];
  'app_secret': (string);
  'control_secret': (string);
}
