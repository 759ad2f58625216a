// Original file: proto/scistream.proto

import type { Long } from '@grpc/proto-loader';

export interface AgentStatus {
  'name'?: (string);
  'address'?: (string);
  'listener_ip'?: (string);
  'up'?: (boolean);
  'streams'?: (number);
  'free_ports'?: (number);
  'bytes_per_second'?: (number | string | Long);
}

export interface AgentStatus__Output {
  'name': (string);
  'address': (string);
  'listener_ip': (string);
  'up': (boolean);
  'streams': (number);
  'free_ports': (number);
  'bytes_per_second': (string);
}
