// The stream table of one S2CS and what goes with it (table.ts assembles the parts).
export { StreamTable } from './table.js';
export { BROKEN_GRACE_MS, CONS_HELLO_WAIT_MS, RATE_POLICIES, type RatePolicy, type StreamTableOptions, type TableSettings } from './options.js';
export type { StreamReply, StreamState } from './record.js';
export type { StreamStatus } from './status.js';
export type { HelloCredentials } from './hello.js';
export type { EndedStream } from './release.js';
export { isLoopback, plaintextDataPolicy } from './plaintext.js';
export { isCountedRefusal } from './counted.js';
export { placedRequest, type PlacedStream } from './placement.js';
