// Per-stream credentials for the WAN leg (the seed's rules 6 and 9): S2UC makes a
// key pair and certificate for each gateway of a stream, and each side pins the
// other's certificate. They exist for that stream alone and are never stored.
import type { StreamCredentials__Output as StreamCredentials } from '../protocol/generated/scistream/StreamCredentials.js';
import { createSelfSigned } from './certificates.js';

export interface StreamCredentialPair {
  /** For the producer-side gateway (accepts on its WAN listeners). */
  producerSide: StreamCredentials;
  /** For the consumer-side gateway (dials the producer side). */
  consumerSide: StreamCredentials;
}

/** Long enough for any stream; the credentials die with the stream's release anyway. */
const VALID_DAYS = 30;

export async function createStreamCredentials(uid: string): Promise<StreamCredentialPair> {
  const [prod, cons] = await Promise.all([
    createSelfSigned({ commonName: `scistream ${uid} producer gateway`, validDays: VALID_DAYS }),
    createSelfSigned({ commonName: `scistream ${uid} consumer gateway`, validDays: VALID_DAYS }),
  ]);
  return {
    producerSide: { certificate: prod.cert, private_key: prod.key, peer_certificate: cons.cert },
    consumerSide: { certificate: cons.cert, private_key: cons.key, peer_certificate: prod.cert },
  };
}
