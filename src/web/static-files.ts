// The dashboard's files at `/` on the web port: GET and HEAD, only files inside one folder, index.html for `/`
// and for paths without an extension (the page's own routes). Everything else the port answers is an RPC.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import type { WebRequest, WebResponse } from './node-http.js';

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};
const INDEX = 'index.html';

function answer(res: WebResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`${text}\n`);
}

/** The file a URL path names inside `root`, or null for a path that cannot name one (escapes, NUL, bad escapes). */
export function fileFor(root: string, urlPath: string): string | null {
  let path: string;
  try {
    path = decodeURIComponent(urlPath.split('?', 1)[0]!);
  } catch {
    return null;
  }
  if (path.includes('\0') || !path.startsWith('/')) return null;
  const file = resolve(root, `.${path}`);
  if (file !== root && !file.startsWith(root + sep)) return null;
  return path.endsWith('/') ? join(file, INDEX) : file;
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

/** Serves `dir()` (read per request, so a dashboard built while the server runs appears); `missing` when null. */
export function staticFiles(dir: () => string | null, missing: string): (req: WebRequest, res: WebResponse) => void {
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(res, 404, 'not found');
    const root = dir();
    if (root === null) return answer(res, 404, missing);
    void (async () => {
      let file = fileFor(resolve(root), req.url ?? '/');
      if (file === null) return answer(res, 400, 'bad path');
      if (!(await isFile(file))) {
        if (extname(file) !== '') return answer(res, 404, 'not found');
        file = join(resolve(root), INDEX);
      }
      const size = (await stat(file)).size;
      res.writeHead(200, {
        'content-type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
        'content-length': String(size),
        // Rebuilding the dashboard changes the files in place: always revalidate.
        'cache-control': 'no-cache',
        'x-content-type-options': 'nosniff',
      });
      if (req.method === 'HEAD') return void res.end();
      const stream = createReadStream(file);
      stream.on('error', () => res.destroy());
      res.on('close', () => stream.destroy());
      stream.pipe(res as NodeJS.WritableStream);
    })().catch(() => {
      if (!res.headersSent) answer(res, 500, 'cannot read the file');
      else res.destroy();
    });
  };
}
