// The import rules of .dependency-cruiser.cjs (run first by `npm test`) on a small tree that breaks each of
// them once: a config edit that stops a rule from firing fails here instead of passing every future change.
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './trainer/fixtures.js';

const CONFIG = resolve('.dependency-cruiser.cjs');
const DEPCRUISE = resolve('node_modules/.bin/depcruise');

const TREE: Record<string, string> = {
  'src/util/errors.ts': 'export const e = 1;',
  'src/runner/job-runner.ts': "import { e } from '../util/errors.js';\nexport const r = e;",
  'src/service/server.ts': "import { r } from '../runner/job-runner.js';\nexport type S = 1;\nexport const s = r;",
  'src/cli/main.ts': "import { s } from '../service/server.js';\nimport { a } from '../auth/a.js';\nexport const m = [s, a];",
  // an upward import, type-only
  'src/store/job-store.ts': "import type { S } from '../service/server.js';\nexport const x: S = 1;",
  // a cycle closed by a type-only import (reported once)
  'src/demo/demo.ts': "import { render } from './report.js';\nexport interface Result { n: number }\nexport const run = render;",
  'src/demo/report.ts': "import type { Result } from './demo.js';\nexport const render = (r: Result) => r.n;",
  // siblings of one tier
  'src/runtime/session.ts': 'export const session = 1;',
  'src/model/config.ts': "import { session } from '../runtime/session.js';\nexport const c = session;",
  // protobuf below the wire
  'src/gen/x.ts': 'export type X = 1;',
  'src/graph/ops.ts': "import type { X } from '../gen/x.js';\nexport const o: X = 1;",
  // a folder with no tier, and an import that does not resolve
  'src/auth/a.ts': "import { e } from '../util/errors.js';\nexport const a = e;",
  'src/trainer/trainer.ts': "import { gone } from './missing.js';\nexport const t = gone;",
  'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true } }),
};

let dir: string;
beforeAll(async () => {
  dir = await tempDir('nt-deprules-');
  for (const [file, text] of Object.entries(TREE)) {
    await mkdir(dirname(join(dir, file)), { recursive: true });
    await writeFile(join(dir, file), `${text}\n`);
  }
});
afterAll(() => rm(dir, { recursive: true, force: true }));

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
}

async function violations(): Promise<string[]> {
  // depcruise exits with the number of errors, so a non-zero exit is the expected outcome here
  const out = await promisify(execFile)(DEPCRUISE, ['src', '--config', CONFIG, '--output-type', 'json'], { cwd: dir }).catch(
    (e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }),
  );
  const report = JSON.parse(out.stdout) as { summary: { violations: Violation[] } };
  return report.summary.violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`).sort();
}

describe('dependency rules', () => {
  it('flag each broken rule once and nothing that follows the tiers', async () => {
    expect(await violations()).toEqual(
      [
        'layer-store: src/store/job-store.ts → src/service/server.ts',
        'no-circular: src/demo/demo.ts → src/demo/report.ts',
        'layer-model: src/model/config.ts → src/runtime/session.ts',
        'gen-at-the-edge: src/graph/ops.ts → src/gen/x.ts',
        'folder-without-tier: src/auth/a.ts → src/util/errors.ts',
        'to-folder-without-tier: src/cli/main.ts → src/auth/a.ts',
        'resolvable: src/trainer/trainer.ts → ./missing.js',
      ].sort(),
    );
  });
});
