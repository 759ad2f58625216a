// Original file: proto/s2ds.proto

import type { RefusalCount as _scistream_s2ds_RefusalCount, RefusalCount__Output as _scistream_s2ds_RefusalCount__Output } from '../../scistream/s2ds/RefusalCount';
import type { WanBreakCount as _scistream_s2ds_WanBreakCount, WanBreakCount__Output as _scistream_s2ds_WanBreakCount__Output } from '../../scistream/s2ds/WanBreakCount';
import type { Long } from '@grpc/proto-loader';

export interface AgentHealth {
  'name'?: (string);
  'version'?: (string);
  'listener_ip'?: (string);
  'reserved_ports'?: (number);
  'free_ports'?: (number);
  'active_connections'?: (number);
  'bytes_total'?: (number | string | Long);
  'buffer_memory_reserved'?: (number | string | Long);
  'buffer_memory_limit'?: (number | string | Long);
  'started_at_ms'?: (number | string | Long);
  'spare_ports'?: (number);
  'refusals'?: (_scistream_s2ds_RefusalCount)[];
  'wan_breaks'?: (_scistream_s2ds_WanBreakCount)[];
  'pending_connections'?: (number);
  'datagram_drops'?: (_scistream_s2ds_RefusalCount)[];
  'udp_flows'?: (number);
}

export interface AgentHealth__Output {
  'name': (string);
  'version': (string);
  'listener_ip': (string);
  'reserved_ports': (number);
  'free_ports': (number);
  'active_connections': (number);
  'bytes_total': (string);
  'buffer_memory_reserved': (string);
  'buffer_memory_limit': (string);
  'started_at_ms': (string);
  'spare_ports': (number);
  'refusals': (_scistream_s2ds_RefusalCount__Output)[];
  'wan_breaks': (_scistream_s2ds_WanBreakCount__Output)[];
  'pending_connections': (number);
  'datagram_drops': (_scistream_s2ds_RefusalCount__Output)[];
  'udp_flows': (number);
}
