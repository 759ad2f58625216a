// A promise-based client of scistream.Control, shared by s2uc and s2app.
import * as grpc from '@grpc/grpc-js';
import { APP_SECRET_HEADER, BINDING_HEADER, BINDS_BY_SECRET, CONTROL_SECRET_HEADER, Control, PROPOSED_SECRET as PROPOSED, type ControlClient } from './contract.js';
import { randomBytes } from 'node:crypto';
import type { Request, Response__Output, UpdateTargets, Release, Hello, AppResponse__Output } from './contract.js';
import type { StatusRequest } from './generated/scistream/StatusRequest.js';
import type { StatusResponse__Output } from './generated/scistream/StatusResponse.js';
import type { Capabilities__Output } from './generated/scistream/Capabilities.js';
import { parseAddress, formatAddress } from './address.js';
import { ANSWERED_HEADER, statusName } from './errors.js';
import { MAX_STATUS_SECRETS } from './validate.js';
import { answeredInPlainText, controlMismatch, diagnose, explain, probeTcp, tidyDetails, type Finding, type TcpReach } from './diagnose.js';
import { channelCredentials, type ClientTlsOptions } from '../security/control-tls.js';

export type { StatusResponse__Output as StatusResponse } from './generated/scistream/StatusResponse.js';
export type { Capabilities__Output as Capabilities } from './generated/scistream/Capabilities.js';

export interface ConnectionOptions {
  /** Plain-text gRPC (no TLS). */
  insecure: boolean;
  /** Per-call deadline in milliseconds. */
  deadlineMs?: number;
  /** Sent in the `authorization` metadata when set. */
  token?: string;
  /**
   * The access token for one server (host:port), asked once per connection when
   * `token` is not set; undefined sends none. s2uc looks it up in tokens.json by the
   * scope config.toml names for that server.
   */
  tokenFor?: (server: string) => Promise<string | undefined>;
  credentials?: grpc.ChannelCredentials;
  /** How to trust the server when not insecure: --server-cert, or pinning on first use. */
  tls?: Omit<ClientTlsOptions, 'insecure'>;
  /** Keep connections open in this pool and reuse them across calls (see ConnectionPool). */
  pool?: ConnectionPool;
  /**
   * false: one attempt per call, no resending of a call that did not reach the server
   * (s2uc status --watch asks again at its next sample anyway). Default true.
   */
  retry?: boolean;
  /**
   * Told of each stream's control secret as soon as a gateway issues it (the early
   * metadata of req), e.g. to keep it for a later release by another process (s2uc
   * keeps it under $SCISTREAM_HOME). The connection itself presents it on update and
   * release of that uid.
   */
  onControlSecret?: (uid: string, secret: string, server: string) => void;
  /** A stream's control secret kept elsewhere (a file, a flag), for update and release when this connection has none. */
  controlSecretFor?: (server: string, uid: string) => string | undefined;
  /** The control secrets kept for a server's streams (one uid, or all), presented with status. */
  controlSecretsFor?: (server: string, uid: string | undefined) => string[];
  /**
   * false: speak as a reference client: no `scistream-binding` header on req, and the
   * control secrets gateways issue are neither kept nor presented. Without token
   * checking the streams it requests are then bound to this host's address (and an
   * update may race its req). Default true.
   */
  bindBySecret?: boolean;
  /** Told when a gateway has released a stream (its control secret is then of no use). */
  onReleased?: (uid: string, server: string) => void;
}

/** A failed rpc, described for a human: which server, which call, what it said. */
/** Answers by which a gateway refused a req outright (nothing was set up for it), unlike a lost answer. */
const REQ_REFUSALS: ReadonlySet<number> = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.ALREADY_EXISTS,
  grpc.status.PERMISSION_DENIED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.UNAUTHENTICATED,
  grpc.status.UNIMPLEMENTED,
]);

export class RemoteError extends Error {
  constructor(
    readonly server: string,
    readonly rpc: string,
    readonly code: number,
    readonly details: string,
    finding?: Finding,
    answered = false,
  ) {
    super(describe(server, rpc, code, details, finding, answered));
    this.name = 'RemoteError';
  }
  get status(): string {
    return statusName(this.code);
  }
}

/**
 * The Python reference's answer to an rpc for a uid it does not hold (an early
 * Hello, a repeated release): an exception in its servicer, so UNKNOWN, whose text
 * says `entry not found`.
 */
export function isReferenceUnknownUid(err: unknown): boolean {
  return err instanceof RemoteError && err.code === grpc.status.UNKNOWN && /entry not found/i.test(err.details);
}

/**
 * The Python reference's answer to a Hello that came while its req is being set up:
 * its s2cs publishes the stream before the stream's listeners, and a Hello in between
 * fails on the missing key (UNKNOWN, `Exception calling application: 'listeners'`).
 * Like `entry not found`, a Hello retried a moment later is taken (its own client waits 0.5 s).
 */
export function isReferenceStreamNotReady(err: unknown): boolean {
  return err instanceof RemoteError && err.code === grpc.status.UNKNOWN && /Exception calling application: '(listeners|prod_listeners)'/.test(err.details);
}

/**
 * `finding`: what probes found after a call could not connect or ran out of time.
 * `answered`: s2cs itself sent the status (its ANSWERED_HEADER trailer).
 */
function describe(server: string, rpc: string, code: number, details: string, finding: Finding | undefined, answered: boolean): string {
  if (finding) return explain(server, rpc, finding, tidyDetails(details));
  if (answered && code === grpc.status.UNAVAILABLE) return `s2cs at ${server} could not serve ${rpc}: UNAVAILABLE: ${details}`;
  if (code === grpc.status.UNAVAILABLE) {
    if (answeredInPlainText(details)) return controlMismatch(server, 'plain');
    return `cannot reach s2cs at ${server} for ${rpc} (${tidyDetails(details)}); check that s2cs runs there, that the address and port are right, and that --insecure is given on both sides or on neither`;
  }
  if (code === grpc.status.DEADLINE_EXCEEDED && /Deadline exceeded/i.test(details)) {
    return `s2cs at ${server} takes connections but did not answer ${rpc} in time; it may be overloaded (see its log): retry, or raise --timeout`;
  }
  return `s2cs at ${server} refused ${rpc}: ${statusName(code)}: ${details}`;
}

// Every rpc is retry-safe on the server (the seed: messages can be lost), so
// grpc-js may resend a call that never reached the server.
const RETRY_CONFIG = JSON.stringify({
  methodConfig: [
    {
      name: [{ service: 'scistream.Control' }],
      retryPolicy: {
        maxAttempts: 4,
        initialBackoff: '0.2s',
        maxBackoff: '2s',
        backoffMultiplier: 2,
        retryableStatusCodes: ['UNAVAILABLE'],
      },
    },
  ],
});

/** A call not connected after this long has TCP probed. */
const CONNECT_WATCH_MS = 4000;
/** How long that probe waits for TCP: it covers the first two SYN retransmissions (1 s, then 3 s). */
const CONNECT_PROBE_MS = 7000;

/** Most control secrets one connection remembers (the oldest are forgotten first). */
const MAX_REMEMBERED_SECRETS = 10_000;

export class ControlConnection {
  private readonly client: ControlClient;
  readonly server: string;
  /** Control secrets by uid: what req answered, or what the caller gave (rememberControlSecret). */
  private readonly secrets = new Map<string, string>();
  /** The TCP probe of a connection whose calls wait for it (see unanswered). */
  private connectProbe: Promise<TcpReach> | undefined;

  constructor(server: string, private readonly opts: ConnectionOptions) {
    this.server = formatAddress(parseAddress(server, 's2cs address'));
    const creds = opts.credentials ?? grpc.credentials.createInsecure();
    // Its own HTTP/2 connection: grpc-js would otherwise share one among channels to a
    // server with equal credentials, and control-tls.ts reuses credentials.
    const own = { 'grpc.use_local_subchannel_pool': 1 };
    this.client = new Control(this.server, creds, opts.retry === false ? { ...own, 'grpc.enable_retries': 0 } : { ...own, 'grpc.service_config': RETRY_CONFIG });
  }

  /** Connects with TLS per `opts` (pinning the server on first use when needed). */
  static async open(server: string, opts: ConnectionOptions): Promise<ControlConnection> {
    const address = formatAddress(parseAddress(server, 's2cs address'));
    const credentials = opts.credentials ?? (await channelCredentials(address, { insecure: opts.insecure, ...opts.tls }));
    return new ControlConnection(address, { ...opts, credentials });
  }

  /**
   * REQ. `onAppSecret` is called once the server has taken the request, before a
   * producer-side req is answered, with the stream's application secret ('' when the
   * server checks no tokens). SciStream-TS servers send it in the initial metadata.
   */
  req(msg: Request, deadlineMs?: number, onAppSecret?: (secret: string) => void): Promise<Response__Output> {
    const uid = msg.uid ?? '';
    // We present the control secret on update and release: bind the stream to it from the start.
    // The secret is ours, proposed here and kept before any answer: a req whose answer is lost
    // leaves us able to release the stream, and its retry proves itself with the same secret.
    const binds = this.opts.bindBySecret !== false;
    const held = binds && uid ? (this.secrets.get(uid) ?? this.opts.controlSecretFor?.(this.server, uid)) : undefined;
    const proposal = binds && uid ? this.proposedSecret(uid) : undefined;
    return this.call<Response__Output>(
      'req',
      (md, o, cb) => {
        if (binds) md.set(BINDING_HEADER, BINDS_BY_SECRET);
        if (proposal) md.set(CONTROL_SECRET_HEADER, proposal);
        const call = this.client.req(msg, md, o, cb);
        call.once('metadata', (headers: grpc.Metadata) => {
          const control = headers.get(CONTROL_SECRET_HEADER)[0];
          if (typeof control === 'string' && control && this.opts.bindBySecret !== false) this.learnSecret(uid, control);
          if (onAppSecret) {
            const v = headers.get(APP_SECRET_HEADER)[0];
            onAppSecret(typeof v === 'string' ? v : '');
          }
        });
        return call;
      },
      deadlineMs,
    ).then(
      (r) => {
        if (r.control_secret && binds) this.learnSecret(uid, r.control_secret);
        return r;
      },
      (err: unknown) => {
        // Refused by the gateway: no stream was bound to a secret proposed just now, so it is not kept.
        if (proposal && proposal !== held && err instanceof RemoteError && REQ_REFUSALS.has(err.code) && this.secrets.get(uid) === proposal) {
          this.secrets.delete(uid);
          this.opts.onReleased?.(uid, this.server);
        }
        throw err;
      },
    );
  }
  /** UpdateTargets; carries the stream's control secret when this connection knows it and the message has none. */
  update(msg: UpdateTargets): Promise<Response__Output> {
    const m = this.withSecret(msg);
    return this.call('update', (md, o, cb) => this.client.update(m, md, o, cb));
  }
  /**
   * Release; carries the control secret like update. The connection keeps the secret
   * (a bounded map): a req for the uid may still be in flight, or come again, and it
   * proposes the same secret, so the stream it sets up stays this connection's to release.
   */
  release(msg: Release): Promise<Response__Output> {
    const m = this.withSecret(msg);
    return this.call<Response__Output>('release', (md, o, cb) => this.client.release(m, md, o, cb)).then((r) => {
      if (msg.uid) this.opts.onReleased?.(msg.uid, this.server);
      return r;
    });
  }

  /** The control secret this connection holds for a stream ('' when none). */
  controlSecret(uid: string): string {
    return this.secrets.get(uid) ?? '';
  }

  /** A control secret obtained elsewhere (another process's req), presented on this connection's update and release of `uid`. */
  rememberControlSecret(uid: string, secret: string): void {
    if (!secret) return;
    this.secrets.delete(uid);
    this.secrets.set(uid, secret);
    if (this.secrets.size > MAX_REMEMBERED_SECRETS) this.secrets.delete(this.secrets.keys().next().value!);
  }

  /** The secret this connection proposes for `uid`: the one it holds, or a new random one (32 bytes), kept at once. */
  private proposedSecret(uid: string): string {
    const held = this.secrets.get(uid) ?? this.opts.controlSecretFor?.(this.server, uid);
    const secret = held && PROPOSED.test(held) ? held : randomBytes(32).toString('base64url');
    this.learnSecret(uid, secret);
    return secret;
  }

  private learnSecret(uid: string, secret: string): void {
    if (!uid || this.secrets.get(uid) === secret) return;
    this.rememberControlSecret(uid, secret);
    this.opts.onControlSecret?.(uid, secret, this.server);
  }

  private withSecret<T extends { uid?: string; control_secret?: string }>(msg: T): T {
    if (msg.control_secret || !msg.uid) return msg;
    const secret = this.secrets.get(msg.uid) ?? this.opts.controlSecretFor?.(this.server, msg.uid);
    return secret ? { ...msg, control_secret: secret } : msg;
  }
  hello(msg: Hello, deadlineMs?: number): Promise<AppResponse__Output> {
    return this.call('hello', (md, o, cb) => this.client.hello(msg, md, o, cb), deadlineMs);
  }
  /**
   * Status; presents the control secrets this connection holds (those of one uid when
   * asked for one), so that the caller's own streams are shown in full.
   */
  status(msg: StatusRequest): Promise<StatusResponse__Output> {
    const m = msg.control_secrets !== undefined ? msg : { ...msg, control_secrets: this.heldSecrets(msg.uid) };
    return this.call('status', (md, o, cb) => this.client.status(m, md, o, cb));
  }

  private heldSecrets(uid: string | undefined): string[] {
    const held = uid ? (this.secrets.has(uid) ? [this.secrets.get(uid)!] : []) : [...this.secrets.values()];
    const kept = this.opts.controlSecretsFor?.(this.server, uid || undefined) ?? [];
    return [...new Set([...held, ...kept])].slice(-MAX_STATUS_SECRETS);
  }

  capabilities(): Promise<Capabilities__Output> {
    return this.call('capabilities', (md, o, cb) => this.client.capabilities({}, md, o, cb));
  }

  close(): void {
    this.client.close();
  }

  /**
   * After a call could not connect (or ran out of time): what actually answers at the
   * address, from short probes (see diagnose.ts): nothing, a firewall, another setting of
   * TLS, an untrusted certificate, or something that is not s2cs.
   */
  private probe(details: string): Promise<Finding | undefined> {
    return diagnose(this.server, details, !this.opts.insecure, this.opts.tls?.clientCert !== undefined);
  }

  /** Whether this connection is still not connected and a TCP probe gets no answer at all (see CONNECT_PROBE_MS). */
  private unanswered(): Promise<boolean> {
    const ready = () => this.client.getChannel().getConnectivityState(false) === grpc.connectivityState.READY;
    if (ready()) return Promise.resolve(false);
    // One probe at a time per connection, however many calls wait on it (a pool's).
    this.connectProbe ??= probeTcp(this.server, CONNECT_PROBE_MS).finally(() => (this.connectProbe = undefined));
    return this.connectProbe.then((reach) => reach === 'no-answer' && !ready());
  }

  private call<T>(
    rpc: string,
    invoke: (md: grpc.Metadata, o: grpc.CallOptions, cb: grpc.requestCallback<T>) => unknown,
    deadlineMs = this.opts.deadlineMs,
  ): Promise<T> {
    // Looked up per call, so that a long-lived (pooled) connection sends a refreshed token.
    const token = this.opts.token !== undefined ? Promise.resolve(this.opts.token) : (this.opts.tokenFor?.(this.server) ?? Promise.resolve(undefined));
    return token.then(
      (t) =>
        new Promise<T>((resolve, reject) => {
          const md = new grpc.Metadata();
          if (t) md.set('authorization', t);
          const options: grpc.CallOptions = deadlineMs ? { deadline: Date.now() + deadlineMs } : {};
          const started = Date.now();
          let settled = false;
          let watch: ReturnType<typeof setTimeout> | undefined;
          const call = invoke(md, options, (err, res) => {
            if (settled) return;
            settled = true;
            clearTimeout(watch);
            if (!err) {
              resolve(res as T);
              return;
            }
            const details = err.details ?? err.message;
            const answered = (err.metadata?.get(ANSWERED_HEADER).length ?? 0) > 0;
            if (!answered && (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED)) {
              void this.probe(details).then((finding) => reject(new RemoteError(this.server, rpc, err.code, details, finding)));
            } else reject(new RemoteError(this.server, rpc, err.code ?? grpc.status.UNKNOWN, details, undefined, answered));
          }) as { cancel?: () => void };
          // A dropped SYN is said after a few seconds, not at the call's deadline (s2app's Hello waits minutes).
          watch = setTimeout(() => {
            void this.unanswered().then((silent) => {
              if (settled || !silent) return;
              // The callback that cancel() brings is then ignored.
              settled = true;
              call.cancel?.();
              reject(new RemoteError(this.server, rpc, grpc.status.UNAVAILABLE, 'no TCP connection', { kind: 'no-answer', waitedMs: Date.now() - started }));
            });
          }, CONNECT_WATCH_MS);
        }),
    );
  }
}

/**
 * Control connections kept open across calls, one per server, for programs that set
 * up many streams (workflow engines, the benchmark): later calls skip the TCP, TLS
 * and HTTP/2 handshakes. The options of the first call to a server apply to it.
 * close() when done; until then the open connections keep the process alive.
 */
export class ConnectionPool {
  private readonly connections = new Map<string, Promise<ControlConnection>>();

  get(server: string, opts: ConnectionOptions): Promise<ControlConnection> {
    const address = formatAddress(parseAddress(server, 's2cs address'));
    // An application controller's connection never carries the user's token.
    const key = `${address} ${opts.token !== undefined || opts.tokenFor ? 'user' : 'anonymous'}`;
    let c = this.connections.get(key);
    if (!c) {
      c = ControlConnection.open(address, { ...opts, pool: undefined });
      c.catch(() => this.connections.delete(key));
      this.connections.set(key, c);
    }
    return c;
  }

  close(): void {
    for (const c of this.connections.values()) c.then((x) => x.close(), () => {});
    this.connections.clear();
  }
}
