// The benchmark's smoke run: the real trainer and the PyTorch reference agree on every step's loss,
// and every row reports its measurements. Timings are never asserted here (bench/README.md has them).
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { tempDir } from '../trainer/fixtures.js';

const RUN = new URL('../../bench/run.ts', import.meta.url).pathname;
let dir: string;
beforeAll(async () => {
  dir = await tempDir('nt-bench-');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

it('tiny rows: narrowtune and PyTorch reach the same losses; measurements are reported', async () => {
  const json = join(dir, 'bench.json');
  const args = ['--import', 'tsx', RUN, '--config', 'tiny', '--policy', 'full', '--policy', 'mlp_gate_up', '--steps', '2', '--warmup', '1', '--vs-torch', '--json', json, '--cache-dir', join(dir, 'cache')];
  const code = await new Promise<number | null>((resolve) => spawn(process.execPath, args, { stdio: 'ignore' }).on('close', resolve));
  expect(code).toBe(0);
  const report = JSON.parse(await readFile(json, 'utf8')) as {
    rows: { config: string; policy: string; status: string; lossCheck: { ok: boolean; maxRelErr: number }; narrowtune: { medianStepMs: number; tokensPerSec: number; peakMB: number; compileMs: number; sessionMs: number } }[];
  };
  expect(report.rows.map((r) => `${r.config}/${r.policy}`)).toEqual(['tiny/full', 'tiny/mlp_gate_up']);
  for (const r of report.rows) {
    expect(r.status).toBe('ok');
    expect(r.lossCheck.ok).toBe(true);
    expect(r.lossCheck.maxRelErr).toBeLessThan(1e-3);
    for (const x of [r.narrowtune.medianStepMs, r.narrowtune.tokensPerSec, r.narrowtune.peakMB, r.narrowtune.sessionMs]) expect(x).toBeGreaterThan(0);
  }
});
