#!/usr/bin/env node
// Runs the compiled CLI (dist/, built by `npm run build` and by npm installs) only while it is newer than every
// file and folder under src/ (a folder's time covers files removed or renamed); otherwise the TypeScript sources
// run through tsx, so an edit, a pull or a checkout never runs stale code. An installed package has no newer
// sources (npm gives every file one time), so it runs dist/.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const compiled = join(root, 'dist/cli/main.js');
const sources = join(root, 'src');

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return null;
  }
}

/** The newest modification time of `dir`, its folders and its files. */
function newest(dir) {
  let t = statSync(dir).mtimeMs;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

const built = mtime(compiled);
const edited = mtime(sources) === null ? null : newest(sources);
if (built !== null && (edited === null || edited <= built)) {
  await import(pathToFileURL(compiled).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(sources, 'cli/main.ts')).href);
}
