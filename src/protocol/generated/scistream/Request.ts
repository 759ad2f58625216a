// Original file: proto/scistream.proto


export interface Request {
  'uid'?: (string);
  'role'?: (string);
  'num_conn'?: (number);
  'rate'?: (number);
  'lifetime_s'?: (number);
  'allow_from'?: (string)[];
  'listener_ports'?: (number)[];
  'protocol'?: (string);
}

export interface Request__Output {
  'uid': (string);
  'role': (string);
  'num_conn': (number);
  'rate': (number);
  'lifetime_s': (number);
  'allow_from': (string)[];
  'listener_ports': (number)[];
  'protocol': (string);
}
