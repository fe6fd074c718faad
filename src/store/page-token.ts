// Opaque list cursors: base64url JSON of the last row's sort key plus the filter it was issued for.
import { invalidArgument } from '../util/errors.js';

export interface PageCursor {
  createTime: number;
  queueOrder: number;
  filter: string; // the request's filter, so a token cannot silently be reused with a different one
}

export function encodePageToken(c: PageCursor): string {
  return Buffer.from(JSON.stringify({ t: c.createTime, q: c.queueOrder, f: c.filter }), 'utf8').toString('base64url');
}

export function decodePageToken(token: string, filter: string): PageCursor {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw invalidArgument('page_token', 'not a page token returned by this list call');
  }
  const o = raw as { t?: unknown; q?: unknown; f?: unknown } | null;
  if (typeof o !== 'object' || o === null || !Number.isSafeInteger(o.t) || !Number.isSafeInteger(o.q) || typeof o.f !== 'string') {
    throw invalidArgument('page_token', 'not a page token returned by this list call');
  }
  if (o.f !== filter) throw invalidArgument('page_token', 'the page token was issued for a different state filter');
  return { createTime: o.t as number, queueOrder: o.q as number, filter: o.f };
}
