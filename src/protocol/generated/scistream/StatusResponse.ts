// Original file: proto/scistream.proto

import type { StreamStatus as _scistream_StreamStatus, StreamStatus__Output as _scistream_StreamStatus__Output } from '../scistream/StreamStatus';
import type { Refusal as _scistream_Refusal, Refusal__Output as _scistream_Refusal__Output } from '../scistream/Refusal';

export interface StatusResponse {
  'streams'?: (_scistream_StreamStatus)[];
  'reserved_ports'?: (number);
  'free_ports'?: (number);
  'refusals'?: (_scistream_Refusal)[];
}

export interface StatusResponse__Output {
  'streams': (_scistream_StreamStatus__Output)[];
  'reserved_ports': (number);
  'free_ports': (number);
  'refusals': (_scistream_Refusal__Output)[];
}
