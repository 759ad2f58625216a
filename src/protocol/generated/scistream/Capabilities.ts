// Original file: proto/scistream.proto


export interface Capabilities {
  'implementation'?: (string);
  'version'?: (string);
  'stream_credentials'?: (boolean);
  'plaintext_data'?: (boolean);
  'early_app_secret'?: (boolean);
  'checks_tokens'?: (boolean);
  'rate_policy'?: (string);
}

export interface Capabilities__Output {
  'implementation': (string);
  'version': (string);
  'stream_credentials': (boolean);
  'plaintext_data': (boolean);
  'early_app_secret': (boolean);
  'checks_tokens': (boolean);
  'rate_policy': (string);
}
