// SciStream as a library, for workflow engines and application controllers.
export { requestStream, inboundRequest, outboundRequest, request1, releaseStream, controlSecretsOf, gatewayCapabilities, MAX_LIFETIME_S } from './s2uc/flows.js';
export type { ConnectionMap, SideResult, StreamSpec, FlowOptions, GatewayCapabilities } from './s2uc/flows.js';
export { streamStatus, gatewaysStatus, type GatewayStatus, type GatewayFailure, type StatusReport, type StreamStatusRow } from './s2uc/status.js';
export { sendHello, type HelloResult } from './app/controller.js';
export { startProducer, type Producer, type ProducerOptions } from './app/produce.js';
export { consume, type ConsumerOptions, type ConsumeResult } from './app/consume.js';
export { startControlServer, type ControlServer, type ControlServerOptions } from './s2cs/server.js';
export { ControlConnection, ConnectionPool, RemoteError, type ConnectionOptions } from './protocol/client.js';
export { ScistreamError } from './protocol/errors.js';
export { parseAddress, formatAddress, type Address } from './protocol/address.js';
export type { Role } from './protocol/validate.js';
export type { HelloOptions } from './app/controller.js';
export { UserAuth, type UserAuthOptions } from './s2uc/auth/login.js';
export { createAuthenticator, type Authenticator, type AuthConfig, type Identity } from './auth/index.js';
// Durations (StreamSpec.lifetimeS from "30m", "2h") and rates (StreamSpec.rate from "200Mbit/s") as users write them.
export { parseDuration, parseRate } from './units.js';
