// Confines paths from requests to configured roots: `..`, absolute paths elsewhere and symlinks that
// lead out are rejected before anything is opened. Messages quote the caller's own path (cut to a few hundred
// characters) and never the roots: where the server keeps its files is not the caller's business.
import { realpathSync } from 'node:fs';
import { access, constants, realpath } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { invalidArgument, NarrowtuneError, quote } from '../util/errors.js';

const MAX_PATH_LENGTH = 4096;
/** NAME_MAX of Linux and macOS file systems: a longer name fails every file call with ENAMETOOLONG. */
const MAX_NAME_BYTES = 255;

function inside(root: string, p: string): boolean {
  const rel = relative(root, p);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** The real path of an existing root (roots themselves may be symlinks, e.g. /tmp on macOS). */
export function realRoots(roots: string[]): string[] {
  return roots.map((r) => realpathSync(resolve(r)));
}

/** Which roots a path was checked against, as messages name them. */
export type RootKind = 'model' | 'data';

/**
 * Resolves `p` (relative paths against the first root) and checks that it, and what any symlink in it
 * points to, lies inside one of `roots` (already real paths). A missing file is allowed; its
 * nearest existing ancestor is checked instead.
 */
export async function confinePath(p: string, roots: string[], field: string, kind: RootKind = 'model'): Promise<string> {
  if (p.length === 0) throw invalidArgument(field, 'is required');
  if (p.length > MAX_PATH_LENGTH || p.includes('\0')) throw invalidArgument(field, `is not a valid path (at most ${MAX_PATH_LENGTH} characters, no NUL)`);
  if (p.split(/[\\/]/).some((name) => Buffer.byteLength(name) > MAX_NAME_BYTES)) {
    throw invalidArgument(field, `${quote(p)} is not a valid path: a name in it is longer than ${MAX_NAME_BYTES} bytes`);
  }
  const abs = isAbsolute(p) ? resolve(p) : resolve(roots[0], p);
  if (!roots.some((r) => inside(r, abs))) {
    throw invalidArgument(field, `${quote(p)} is outside the allowed ${kind} roots`);
  }
  let real: string;
  let probe = abs;
  let rest = '';
  for (;;) {
    try {
      real = resolve(await realpath(probe), rest);
      break;
    } catch {
      const parent = resolve(probe, '..');
      if (parent === probe) throw invalidArgument(field, `${quote(p)} cannot be resolved`);
      rest = rest ? `${probe.slice(parent.length + 1)}${sep}${rest}` : probe.slice(parent.length + 1);
      probe = parent;
    }
  }
  if (!roots.some((r) => inside(r, real))) {
    throw invalidArgument(field, `${quote(p)} leads outside the allowed ${kind} roots through a symbolic link`);
  }
  return real;
}

/** confinePath, then a check that the file can be opened for reading. */
export async function confineReadable(p: string, roots: string[], field: string, kind: RootKind = 'data'): Promise<string> {
  const real = await confinePath(p, roots, field, kind);
  try {
    await access(real, constants.R_OK);
    return real;
  } catch {
    throw invalidArgument(field, `${quote(p)} does not exist or is not readable`);
  }
}

/**
 * `text` with each root written as the caller would: a path inside a root relative to it (`qwen/config.json`),
 * the root itself as `.`. Files the server opened on a caller's behalf are named by their real paths, which
 * begin with a root.
 */
export function hideRoots(text: string, roots: readonly string[]): string {
  // Longest first, so a root inside another is replaced before its parent.
  const escape = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  for (const root of [...roots].sort((a, b) => b.length - a.length)) {
    if (root === sep) continue;
    // The root and a separator (dropped), or the root as a whole path (`.`), not the start of a name like `root2`.
    text = text.replace(new RegExp(`${escape(root)}(?:${escape(sep)}|(?![\\w.-]))`, 'g'), (m) => (m === root ? '.' : ''));
  }
  return text;
}

/** An error with hideRoots applied to its message (and a domain error's violations); anything else as it is. */
export function withRootsHidden(e: unknown, roots: readonly string[]): unknown {
  const hide = (t: string) => hideRoots(t, roots);
  // Unexpected errors reach the client as INTERNAL with their message (e.g. an fs error naming its path).
  if (!(e instanceof NarrowtuneError)) return e instanceof Error ? Object.assign(new Error(hide(e.message), { cause: e }), { name: e.name }) : e;
  const violations = e.violations.map((v) => ({ field: v.field, description: hide(v.description) }));
  return new NarrowtuneError(e.kind, hide(e.message), violations, { cause: e, details: e.details });
}
