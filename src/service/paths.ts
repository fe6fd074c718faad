// Confines paths from requests to configured roots: `..`, absolute paths elsewhere and symlinks that
// lead out are rejected before anything is opened.
import { realpathSync } from 'node:fs';
import { access, constants, realpath } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { invalidArgument } from '../util/errors.js';

const MAX_PATH_LENGTH = 4096;

function inside(root: string, p: string): boolean {
  const rel = relative(root, p);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** The real path of an existing root (roots themselves may be symlinks, e.g. /tmp on macOS). */
export function realRoots(roots: string[]): string[] {
  return roots.map((r) => realpathSync(resolve(r)));
}

/**
 * Resolves `p` (relative paths against the first root) and checks that it, and what any symlink in it
 * points to, lies inside one of `roots` (already real paths). A missing file is allowed; its
 * nearest existing ancestor is checked instead.
 */
export async function confinePath(p: string, roots: string[], field: string): Promise<string> {
  if (p.length === 0) throw invalidArgument(field, 'is required');
  if (p.length > MAX_PATH_LENGTH || p.includes('\0')) throw invalidArgument(field, 'is not a valid path');
  const abs = isAbsolute(p) ? resolve(p) : resolve(roots[0], p);
  if (!roots.some((r) => inside(r, abs))) {
    throw invalidArgument(field, `"${p}" is outside the allowed roots (${roots.join(', ')})`);
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
      if (parent === probe) throw invalidArgument(field, `"${p}" cannot be resolved`);
      rest = rest ? `${probe.slice(parent.length + 1)}${sep}${rest}` : probe.slice(parent.length + 1);
      probe = parent;
    }
  }
  if (!roots.some((r) => inside(r, real))) {
    throw invalidArgument(field, `"${p}" leads outside the allowed roots through a symbolic link`);
  }
  return real;
}

/** confinePath, then a check that the file can be opened for reading. */
export async function confineReadable(p: string, roots: string[], field: string): Promise<string> {
  const real = await confinePath(p, roots, field);
  try {
    await access(real, constants.R_OK);
    return real;
  } catch {
    throw invalidArgument(field, `${real} does not exist or is not readable`);
  }
}
