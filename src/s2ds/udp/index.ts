// UDP streams on a data server (issue 21): listeners, flows, the plain carrier, counters.
export { UdpStream, type UdpStreamOptions, type UdpStreamStats } from './stream.js';
export { DatagramCounters, DropTotals, DROP_CAUSES, MAX_DATAGRAM, type DropCause } from './counters.js';
export { InFlight, UDP_DEFAULTS } from './budget.js';
