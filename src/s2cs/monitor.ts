// The gateway's monitoring endpoint (s2cs start --metrics-listen HOST:PORT): a
// small plain-HTTP server, apart from the control port, serving /metrics
// (Prometheus), /healthz and the status page (/ and /status.json).
//
// Who may look: it shows the operator's view (every stream, its owner and
// addresses, the agents), which is what `status` shows an --admin identity. So it
// belongs on loopback or a management network: with token checking on
// (--auth introspect|jwt), a non-loopback address is refused unless
// --metrics-public says the operator accepts that everyone reaching it sees it all
// (monitorExposureProblem). With --auth none, status shows everyone everything anyway.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import { shown } from '../protocol/text.js';
import { isLoopback } from './streams/index.js';
import type { ControlServer } from './server.js';
import { STATUS_PAGE_CSP, renderStatusPage } from './status-page.js';
import type { Viewer } from './service.js';

/** Bounds for hostile or broken HTTP clients: a scrape or a page is one small GET. */
export const MONITOR_LIMITS = {
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxHeaderSize: 8 * 1024,
  maxConnections: 128,
} as const;

export interface MonitorOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  gateway: Pick<ControlServer, 'metrics' | 'status' | 'health'>;
  /** The page's heading, e.g. "s2cs 198.51.100.7:5000". */
  title: string;
  logger: Logger;
}

export interface Monitor {
  readonly port: number;
  close(): Promise<void>;
}

/** The monitor sees what an --admin identity sees. */
const OPERATOR: Viewer = { subject: '', seesAll: true };

/**
 * Why --metrics-listen on `host` would show more than `status` shows the same
 * callers (undefined when it would not): only loopback unless --metrics-public.
 */
export function monitorExposureProblem(host: string, authMode: string, allowPublic: boolean): string | undefined {
  if (allowPublic || isLoopback(host)) return undefined;
  const theirs = authMode === 'none' ? "see other callers' streams without their listeners and targets" : 'see only their own';
  return (
    `--metrics-listen ${host} is not a loopback address: the page and /metrics show every stream, owner and address to anyone who reaches it, ` +
    `while callers of status (--auth ${authMode}) ${theirs}; bind it to 127.0.0.1 or ::1 (scrape through an SSH tunnel or a local Prometheus), ` +
    'or add --metrics-public if only your management network reaches that address'
  );
}

export async function startMonitor(opts: MonitorOptions): Promise<Monitor> {
  const { gateway, logger } = opts;
  gateway.metrics.withProcessMetrics();
  const server = createServer(
    {
      maxHeaderSize: MONITOR_LIMITS.maxHeaderSize,
      headersTimeout: MONITOR_LIMITS.headersTimeoutMs,
      requestTimeout: MONITOR_LIMITS.requestTimeoutMs,
      keepAliveTimeout: MONITOR_LIMITS.keepAliveTimeoutMs,
      // How often those timeouts are checked (Node's default, 30 s, would let a stalled request linger that long).
      connectionsCheckingInterval: 1_000,
    },
    (req, res) => {
      handle(req, res).catch((err: unknown) => {
        logger.error({ err, path: shown(req.url ?? '', 120) }, 'monitor: serving a request failed');
        if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error; see the s2cs log\n');
        else res.destroy();
      });
    },
  );
  server.maxConnections = MONITOR_LIMITS.maxConnections;
  // A client that breaks its request gets the default 400 and its socket closed; nothing to log per client.

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // The body of a GET means nothing here; drain it (bounded by requestTimeout) rather than let it stall the socket.
    req.resume();
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://monitor').pathname;
    } catch {
      return send(res, 400, 'text/plain; charset=utf-8', 'bad request path\n');
    }
    const route = ROUTES[path];
    if (!route) return send(res, 404, 'text/plain; charset=utf-8', 'not found: this s2cs serves /, /status.json, /metrics and /healthz\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed: use GET\n');
    }
    switch (route) {
      case 'metrics': {
        const text = await gateway.metrics.registry.metrics();
        return send(res, 200, gateway.metrics.registry.contentType, text);
      }
      case 'healthz': {
        const h = gateway.health();
        return h.ok ? send(res, 200, 'text/plain; charset=utf-8', 'ok\n') : send(res, 503, 'text/plain; charset=utf-8', `unavailable: ${h.why}\n`);
      }
      case 'json':
        return send(res, 200, 'application/json; charset=utf-8', JSON.stringify(gateway.status(OPERATOR)));
      case 'page':
        res.setHeader('Content-Security-Policy', STATUS_PAGE_CSP);
        res.setHeader('X-Frame-Options', 'DENY');
        res.setHeader('Referrer-Policy', 'no-referrer');
        return send(res, 200, 'text/html; charset=utf-8', renderStatusPage(gateway.status(OPERATOR), opts.title));
    }
  }

  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: opts.host, port: opts.port, exclusive: true }, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
  server.on('error', (err) => logger.error({ err }, 'monitor: HTTP server error'));
  let closing: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

type Route = 'metrics' | 'healthz' | 'json' | 'page';
const ROUTES: Record<string, Route | undefined> = Object.assign(Object.create(null) as Record<string, Route>, {
  '/': 'page',
  '/status.json': 'json',
  '/metrics': 'metrics',
  '/healthz': 'healthz',
});

function send(res: ServerResponse, code: number, type: string, body: string): void {
  res.statusCode = code;
  res.setHeader('Content-Type', type);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
