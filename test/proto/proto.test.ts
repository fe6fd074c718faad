// Checks on the API contract: buf lint, src/gen matches a fresh `buf generate`, and no breaking change since the
// last release (proto/releases). All offline: buf runs from node_modules and the googleapis protos are vendored.

import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = new URL('../..', import.meta.url).pathname;
const BUF = join(ROOT, 'node_modules/.bin/buf');
const GEN_DIR = 'src/gen';
const BASELINE = 'proto/releases/v0.1.0.binpb';
const SERVICE_PROTO = 'proto/narrowtune/v1/tuning_service.proto';

/** Runs buf in `cwd`; returns its exit status and combined output instead of throwing, for readable failures. */
function buf(args: string[], cwd = ROOT): { status: number; output: string } {
  try {
    const stdout = execFileSync(BUF, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { status: 0, output: stdout };
  } catch (e) {
    const err = e as { status?: number; stdout?: string; stderr?: string; message: string };
    return { status: err.status ?? -1, output: `${err.stdout ?? ''}${err.stderr ?? ''}` || err.message };
  }
}

// Dirent.parentPath is newer than the Node 20.6 we support, so list paths and stat them instead.
async function listFiles(dir: string): Promise<string[]> {
  const paths = await readdir(dir, { recursive: true });
  const isFile = await Promise.all(paths.map(async (p) => (await stat(join(dir, p))).isFile()));
  return paths.filter((_, i) => isFile[i]).sort();
}

const tempDirs: string[] = [];
afterEach(async () => {
  await Promise.all(tempDirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'narrowtune-proto-'));
  tempDirs.push(d);
  return d;
}

describe('proto contract', () => {
  it('passes buf lint', () => {
    expect(buf(['lint'])).toEqual({ status: 0, output: '' });
  });

  it('src/gen is exactly what buf generate produces (never edited by hand)', async () => {
    const out = await tempDir();
    const result = buf(['generate', '-o', out]);
    expect(result.status, result.output).toBe(0);
    const fresh = join(out, GEN_DIR);
    const committed = join(ROOT, GEN_DIR);
    const files = await listFiles(committed);
    expect(await listFiles(fresh)).toEqual(files);
    for (const f of files) {
      const [a, b] = await Promise.all([readFile(join(fresh, f)), readFile(join(committed, f))]);
      expect(a.equals(b), `${GEN_DIR}/${f} differs from buf generate's output; run \`npx buf generate\``).toBe(true);
    }
  });

  it(`has no breaking change against ${BASELINE}`, () => {
    const result = buf(['breaking', 'proto', '--against', BASELINE]);
    expect(result, result.output).toEqual({ status: 0, output: '' });
  });

  // Guards against a vacuous pass (say, the baseline's file paths no longer lining up with the module's).
  it('buf breaking does catch a renamed field', async () => {
    const ws = await tempDir();
    await cp(join(ROOT, 'buf.yaml'), join(ws, 'buf.yaml'));
    await cp(join(ROOT, 'proto'), join(ws, 'proto'), { recursive: true });
    const proto = join(ws, SERVICE_PROTO);
    const text = await readFile(proto, 'utf8');
    const renamed = text.replace('int32 total_steps = 2;', 'int32 total_step_count = 2;');
    expect(renamed).not.toBe(text);
    await writeFile(proto, renamed);
    const result = buf(['breaking', 'proto', '--against', BASELINE], ws);
    expect(result.status).not.toBe(0);
    expect(result.output).toContain('changed name from "total_steps" to "total_step_count"');
  });
});
