// The web port: Connect (JSON and binary) and gRPC-Web for the routes it is given, the dashboard's files at `/`,
// and CORS. HTTPS (HTTP/2, HTTP/1.1 by ALPN) with TLS material; plaintext HTTP/1.1 and h2c without. Knows nothing
// of the service: server.ts passes the routes (connect-routes.ts) in.
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { type ConnectRouter, createContextKey, createContextValues } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { handleCors } from './cors.js';
import { DASHBOARD_MISSING_HINT, dashboardDir } from './dashboard-assets.js';
import type { WebHandler, WebRequest, WebResponse } from './node-http.js';
import { plaintextListener, tlsListener } from './protocol-dispatch.js';
import { staticFiles } from './static-files.js';

/** PEM material, as service/tls.ts reads it; with `requestCert`, clients need a certificate signed by `ca`. */
export interface WebTls {
  cert: Buffer;
  key: Buffer;
  ca: Buffer | null;
  requestCert: boolean;
}

export interface WebServerOptions {
  host: string;
  /** 0: any free port. */
  port: number;
  /** Registers the RPCs. */
  routes: (router: ConnectRouter) => void;
  /** Largest request message accepted (after decompression), in bytes. */
  readMaxBytes: number;
  /** Origins allowed to call from other pages; none turns CORS off. `*`: any. */
  corsOrigins?: readonly string[];
  tls?: WebTls | null;
  /** The folder served at `/` (default: the built dashboard). */
  staticDir?: () => string | null;
  /** How long a request's headers and body may take to arrive, and an HTTP/2 connection may stay silent (default REQUEST_RECEIVE_TIMEOUT_MS). */
  receiveTimeoutMs?: number;
}

export interface RunningWebServer {
  port: number;
  /** e.g. http://127.0.0.1:8080 */
  url: string;
  /** Stops accepting, lets running responses finish (streams end through the service's shutdown), then closes. */
  close(): Promise<void>;
}

/** The client's address, for the RPC log line. */
export const PEER = createContextKey<string | undefined>(undefined, { description: 'peer address' });

/** A request whose headers or body have not arrived by then is dropped: a client cannot hold a stream by stalling. */
export const REQUEST_RECEIVE_TIMEOUT_MS = 30_000;
/** How often the HTTP/1.1 server looks for requests past that timeout. */
const RECEIVE_CHECK_MS = 1_000;
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Concurrent requests on one HTTP/2 connection. */
const MAX_CONCURRENT_STREAMS = 100;
/** How long close() waits for connections to finish before cutting them. */
const CLOSE_GRACE_MS = 5_000;
const CLOSE_POLL_MS = 50;

function withReceiveTimeout(handler: WebHandler, ms: number): WebHandler {
  return (req, res) => {
    // HTTP/2: reset the stream (the connection's other streams go on); HTTP/1.1: drop the connection.
    const drop = () => ('stream' in req ? req.stream.close(http2.constants.NGHTTP2_CANCEL) : req.destroy());
    const timer = setTimeout(drop, ms).unref();
    const clear = () => clearTimeout(timer);
    // Not on the response's finish: an answer sent before the body was read (an unknown method) must not leave
    // the client free to hold its half of the stream open.
    req.once('end', clear);
    req.once('close', clear);
    res.once('close', clear);
    handler(req, res);
  };
}

export async function startWebServer(opts: WebServerOptions): Promise<RunningWebServer> {
  const origins = opts.corsOrigins ?? [];
  const receiveTimeoutMs = opts.receiveTimeoutMs ?? REQUEST_RECEIVE_TIMEOUT_MS;
  const rpc = connectNodeAdapter({
    routes: opts.routes,
    readMaxBytes: opts.readMaxBytes,
    // The gRPC port serves gRPC (with health and reflection); this one the protocols a browser can speak.
    grpc: false,
    fallback: staticFiles(opts.staticDir ?? dashboardDir, DASHBOARD_MISSING_HINT),
    contextValues: (req) => createContextValues().set(PEER, req.socket.remoteAddress),
  });
  // For close(): every accepted connection, and the HTTP/2 sessions (asked to go rather than cut).
  const accepted = new Set<Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  let closing: Promise<void> | null = null;

  const handler = withReceiveTimeout((req: WebRequest, res: WebResponse) => {
    // While closing, an HTTP/1.1 connection ends with its response instead of waiting for another request.
    if (closing && !('stream' in req)) res.setHeader('connection', 'close');
    if (!handleCors(origins, req, res)) rpc(req, res);
  }, receiveTimeoutMs);
  const h1 = http.createServer({ headersTimeout: receiveTimeoutMs, requestTimeout: receiveTimeoutMs, connectionsCheckingInterval: Math.min(RECEIVE_CHECK_MS, receiveTimeoutMs) }, handler);
  // Node enforces those timeouts (and tracks connections) from 'listening'; this server never listens itself,
  // its connections come from the dispatching listener.
  h1.emit('listening');
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS } }, handler);
  h2.on('session', (s) => sessions.add(s.once('close', () => sessions.delete(s))));
  h2.on('sessionError', () => {}); // the session is destroyed; nothing a client sends may reach the process
  // A session without traffic for as long is asked to go (GOAWAY): its running streams finish, no new ones start.
  h2.setTimeout(receiveTimeoutMs);
  h2.on('timeout', (session: http2.Http2Session) => session.close());
  const servers = { h1, h2 };
  const listener = opts.tls
    ? tlsListener(servers, {
        cert: opts.tls.cert,
        key: opts.tls.key,
        ca: opts.tls.ca ?? undefined,
        requestCert: opts.tls.requestCert,
        rejectUnauthorized: opts.tls.requestCert,
        handshakeTimeout: Math.min(TLS_HANDSHAKE_TIMEOUT_MS, receiveTimeoutMs),
      })
    : plaintextListener(servers, receiveTimeoutMs);
  listener.on('connection', (socket: Socket) => {
    accepted.add(socket);
    socket.once('close', () => accepted.delete(socket));
  });

  await new Promise<void>((ok, fail) => {
    listener.once('error', fail);
    listener.listen(opts.port, opts.host, () => {
      listener.off('error', fail);
      ok();
    });
  });
  const port = (listener.address() as AddressInfo).port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;

  return {
    port,
    url: `${opts.tls ? 'https' : 'http'}://${host}:${port}`,
    close: () =>
      (closing ??= (async () => {
        const closed = new Promise<void>((ok) => listener.close(() => ok()));
        for (const s of sessions) s.close(); // GOAWAY: running streams finish, no new ones start
        const deadline = Date.now() + CLOSE_GRACE_MS;
        while (accepted.size > 0 && Date.now() < deadline) {
          h1.closeIdleConnections(); // again as responses end: keep-alive connections between requests
          await new Promise((r) => setTimeout(r, CLOSE_POLL_MS));
        }
        for (const socket of accepted) socket.destroy();
        h1.close(() => {}); // stops its timeout checks
        await closed;
      })()),
  };
}
