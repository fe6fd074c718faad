// CORS for the web port: off unless origins are configured (a page served by another origin then cannot call
// the API at all); with them, those origins may call every RPC with the headers the Connect and gRPC-Web
// protocols use, plus `authorization`. The page the port itself serves is same-origin and needs none of this.
import { cors } from '@connectrpc/connect';
import type { WebRequest, WebResponse } from './node-http.js';

/** The origin that lets any page call (API keys, not cookies, carry identity here, so credentials stay off). */
export const ANY_ORIGIN = '*';
const ALLOW_METHODS = cors.allowedMethods.join(', ');
const ALLOW_HEADERS = [...cors.allowedHeaders, 'Authorization'].join(', ');
const EXPOSE_HEADERS = cors.exposedHeaders.join(', ');
/** How long a browser may cache a preflight's answer. */
const PREFLIGHT_MAX_AGE_SECONDS = 7200;

/** Origins as `--cors-origin` takes them: `scheme://host[:port]`, or `*`. Throws a message naming the bad one. */
export function checkCorsOrigin(origin: string): string {
  if (origin === ANY_ORIGIN) return origin;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    throw new Error(`${JSON.stringify(origin)} is not an origin (scheme://host[:port], e.g. http://localhost:5173, or *)`);
  }
  if (url.origin !== origin) throw new Error(`${JSON.stringify(origin)} is not an origin: write it as ${url.origin} (no path, no trailing slash)`);
  return origin;
}

/**
 * Adds the CORS response headers a request's origin is allowed; answers a preflight (OPTIONS with
 * Access-Control-Request-Method) itself and returns true then.
 */
export function handleCors(origins: readonly string[], req: WebRequest, res: WebResponse): boolean {
  const origin = req.headers.origin;
  if (origins.length === 0 || typeof origin !== 'string') return false;
  const allowed = origins.includes(ANY_ORIGIN) || origins.includes(origin);
  res.setHeader('Vary', 'Origin');
  if (allowed) {
    res.setHeader('Access-Control-Allow-Origin', origin);
    res.setHeader('Access-Control-Expose-Headers', EXPOSE_HEADERS);
  }
  if (req.method !== 'OPTIONS' || req.headers['access-control-request-method'] === undefined) return false;
  if (allowed) {
    res.setHeader('Access-Control-Allow-Methods', ALLOW_METHODS);
    res.setHeader('Access-Control-Allow-Headers', ALLOW_HEADERS);
    res.setHeader('Access-Control-Max-Age', String(PREFLIGHT_MAX_AGE_SECONDS));
  }
  res.writeHead(allowed ? 204 : 403);
  res.end();
  return true;
}
