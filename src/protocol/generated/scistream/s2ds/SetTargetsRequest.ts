// Original file: proto/s2ds.proto

import type { WanLeg as _scistream_s2ds_WanLeg, WanLeg__Output as _scistream_s2ds_WanLeg__Output } from '../../scistream/s2ds/WanLeg';

export interface SetTargetsRequest {
  'uid'?: (string);
  'targets'?: (string)[];
  'wan'?: (_scistream_s2ds_WanLeg | null);
  'record'?: (Buffer | Uint8Array | string);
}

export interface SetTargetsRequest__Output {
  'uid': (string);
  'targets': (string)[];
  'wan': (_scistream_s2ds_WanLeg__Output | null);
  'record': (Buffer);
}
