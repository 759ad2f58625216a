// Standing tunnels of the configuration file ([[tunnel]]): spec.ts reads and checks them, standing.ts keeps them.
export { readTunnels, sameTunnel, tunnelOwner, type TunnelContext, type TunnelDirection, type TunnelSpec } from './spec.js';
export { StandingTunnels, type TunnelChanges } from './standing.js';
