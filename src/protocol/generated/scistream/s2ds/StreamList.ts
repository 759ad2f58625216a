// Original file: proto/s2ds.proto

import type { StreamInfo as _scistream_s2ds_StreamInfo, StreamInfo__Output as _scistream_s2ds_StreamInfo__Output } from '../../scistream/s2ds/StreamInfo';

export interface StreamList {
  'streams'?: (_scistream_s2ds_StreamInfo)[];
}

export interface StreamList__Output {
  'streams': (_scistream_s2ds_StreamInfo__Output)[];
}
