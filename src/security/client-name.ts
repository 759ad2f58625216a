// The program named in advice about the control channel ("pass --insecure to s2uc too").
// Apart from control-tls.ts so that setting it at start-up loads no gRPC or TLS code.
let name = 'the client';

/** runCli sets it (s2uc, s2app). */
export function setClientName(program: string): void {
  name = program;
}

export function clientName(): string {
  return name;
}
