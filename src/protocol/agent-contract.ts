// The S2CS–S2DS link's contract: proto/s2ds.proto loaded at run time, with the
// types generated from it by `npm run gen:proto` (src/protocol/generated/scistream/s2ds).
import { fileURLToPath } from 'node:url';
import { loadProto } from './contract.js';
import type { ProtoGrpcType } from './generated/s2ds.js';

export const AGENT_PROTO_PATH = fileURLToPath(new URL('../../../proto/s2ds.proto', import.meta.url));

const loaded = loadProto<ProtoGrpcType>(AGENT_PROTO_PATH);

/** The `scistream.s2ds.Agent` service: its definition for the agent, its client class for s2cs. */
export const Agent = loaded.scistream.s2ds.Agent;

export { tolerantService, undecodable } from './contract.js';
export type { AgentClient, AgentHandlers } from './generated/scistream/s2ds/Agent.js';
export type { AgentHealth as AgentHealthMessage, AgentHealth__Output as AgentHealthMessage__Output } from './generated/scistream/s2ds/AgentHealth.js';
export type { Empty, Empty__Output } from './generated/scistream/s2ds/Empty.js';
export type { Listeners, Listeners__Output } from './generated/scistream/s2ds/Listeners.js';
export type { RecordRequest, RecordRequest__Output } from './generated/scistream/s2ds/RecordRequest.js';
export type { SetTargetsRequest, SetTargetsRequest__Output } from './generated/scistream/s2ds/SetTargetsRequest.js';
export type { StartListenersRequest, StartListenersRequest__Output } from './generated/scistream/s2ds/StartListenersRequest.js';
export type { StreamId, StreamId__Output } from './generated/scistream/s2ds/StreamId.js';
export type { StreamInfo, StreamInfo__Output } from './generated/scistream/s2ds/StreamInfo.js';
export type { StreamList, StreamList__Output } from './generated/scistream/s2ds/StreamList.js';
export type { WanLeg as WanLegMessage, WanLeg__Output as WanLegMessage__Output } from './generated/scistream/s2ds/WanLeg.js';

/** Largest record s2cs may keep with a stream (RecordRequest, StartListenersRequest). */
export const MAX_RECORD_BYTES = 64 * 1024;

/** Largest message either side takes on this link: 4096 targets and three PEMs fit many times over. */
export const AGENT_MAX_MESSAGE_BYTES = 1024 * 1024;
