// The tests' OpenID Provider (test/auth/idp.ts) as a process of its own, for tests whose
// programs run in a network namespace: started there, its loopback address is theirs.
// Prints one JSON line with what a test needs to configure against it, then reads commands:
//   approve <url>   a scripted browser (user alice) approves a login at <url>; prints "approved"
// It ends when its standard input closes.
import { createInterface } from 'node:readline';
import { Browser, CLI_CLIENT, GW_CLIENT, SCOPE_A, startIdP } from '../auth/idp.js';

export interface IdpInfo {
  issuer: string;
  introspectionUrl: string;
  cliClient: string;
  gwClient: string;
  gwSecret: string;
  scope: string;
}

const idp = await startIdP();
const info: IdpInfo = { issuer: idp.issuer, introspectionUrl: idp.introspectionUrl, cliClient: CLI_CLIENT, gwClient: GW_CLIENT, gwSecret: idp.gwSecret, scope: SCOPE_A };
process.stdout.write(`${JSON.stringify(info)}\n`);
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const [cmd, url] = line.trim().split(/\s+/);
  if (cmd !== 'approve' || !url) continue;
  try {
    await new Browser('alice').run(url);
    process.stdout.write('approved\n');
  } catch (err) {
    process.stdout.write(`not approved: ${(err as Error).message}\n`);
  }
}
await idp.close();
