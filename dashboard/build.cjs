// Bundles the dashboard (dashboard/src) with esbuild into one folder: index.html, dashboard.js and dashboard.css, with
// preact, uPlot and the Connect client inside, so the page fetches nothing but its own files and the API.
// `node dashboard/build.cjs [OUT]` builds it (npm run build and prepare do). The server, run from a checkout, calls
// ensureDashboard, which rebuilds only when a source is newer than the last build. CommonJS and synchronous (esbuild's
// buildSync, ~0.2 s) so that the server can load and run it from a synchronous call.
const { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } = require('node:fs');
const { basename, dirname, join } = require('node:path');
const esbuild = require('esbuild');

const ROOT = join(__dirname, '..');
const DEFAULT_OUT = join(ROOT, 'dist/dashboard');
/** What the bundle is made of: a change to any of them makes the build stale. */
const INPUTS = [join(__dirname, 'src'), join(__dirname, 'index.html'), __filename, join(ROOT, 'src/gen/es')];
/** Written last, so its time says when a complete build finished. */
const INDEX = 'index.html';

/** @param {string} path @returns {number} newest modification time under path; 0 when it does not exist */
function newest(path) {
  let s;
  try {
    s = statSync(path);
  } catch {
    return 0;
  }
  if (!s.isDirectory()) return s.mtimeMs;
  return readdirSync(path).reduce((t, name) => Math.max(t, newest(join(path, name))), s.mtimeMs);
}

/** @param {string} out */
function isStale(out = DEFAULT_OUT) {
  const built = newest(join(out, INDEX));
  return built === 0 || INPUTS.some((p) => newest(p) > built);
}

/** Writes through a temporary name, so a server reading the folder never sees half a file. @param {string} file @param {Uint8Array} data */
function writeAtomic(file, data) {
  const tmp = join(dirname(file), `.${basename(file)}.tmp-${process.pid}`);
  writeFileSync(tmp, data);
  renameSync(tmp, file);
}

/** @param {string} out @returns {string} out */
function buildDashboard(out = DEFAULT_OUT) {
  const result = esbuild.buildSync({
    entryPoints: [join(__dirname, 'src/main.tsx')],
    entryNames: 'dashboard',
    outdir: out,
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2022',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    legalComments: 'eof',
    write: false,
    logLevel: 'silent',
  });
  mkdirSync(out, { recursive: true });
  for (const f of result.outputFiles) writeAtomic(f.path, f.contents);
  writeAtomic(join(out, INDEX), readFileSync(join(__dirname, INDEX)));
  return out;
}

/** Builds into `out` when it is missing or older than a source. @param {string} out @returns {string} out */
function ensureDashboard(out = DEFAULT_OUT) {
  return isStale(out) ? buildDashboard(out) : out;
}

module.exports = { DEFAULT_OUT, isStale, buildDashboard, ensureDashboard };

if (require.main === module) {
  console.log(`dashboard built in ${buildDashboard(process.argv[2] ?? DEFAULT_OUT)}`);
}
