// The benchmark's smoke run: the real trainer and the PyTorch reference agree on every step's loss,
// and every row reports its measurements. Timings are never asserted here (bench/README.md has them).
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CHECK_MIN_STEPS } from '../../src/bench/configs.js';
import { needs } from '../support/system-tools.js';
import { tempDir } from '../trainer/fixtures.js';
import { runBench } from './bench-process.js';

let dir: string;
beforeAll(async () => {
  dir = await tempDir('nt-bench-');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

it('tiny rows: narrowtune and PyTorch reach the same losses; measurements are reported', needs('torch'), async () => {
  const json = join(dir, 'bench.json');
  // As few steps as the loss check accepts (warm-up included): fewer would compare losses that no update moved.
  const warmup = 1;
  const steps = CHECK_MIN_STEPS - warmup;
  const { code, output } = await runBench([
    ...['--config', 'tiny', '--policy', 'full', '--policy', 'mlp_gate_up', '--steps', String(steps), '--warmup', String(warmup)],
    ...['--vs-torch', '--json', json, '--cache-dir', join(dir, 'cache')],
  ]);
  expect(code, output).toBe(0);
  expect(output).not.toMatch(/the loss check has seen/);
  const report = JSON.parse(await readFile(json, 'utf8')) as {
    rows: {
      config: string;
      policy: string;
      status: string;
      lossCheck: { ok: boolean; maxRelErr: number };
      narrowtune: { medianStepMs: number; tokensPerSec: number; peakMB: number; compileMs: number; sessionMs: number; losses: number[] };
    }[];
  };
  expect(report.rows.map((r) => `${r.config}/${r.policy}`)).toEqual(['tiny/full', 'tiny/mlp_gate_up']);
  for (const r of report.rows) {
    expect(r.status, output).toBe('ok');
    expect(r.narrowtune.losses).toHaveLength(CHECK_MIN_STEPS);
    expect(r.lossCheck.ok).toBe(true);
    expect(r.lossCheck.maxRelErr).toBeLessThan(1e-3);
    for (const x of [r.narrowtune.medianStepMs, r.narrowtune.tokensPerSec, r.narrowtune.peakMB, r.narrowtune.sessionMs]) expect(x).toBeGreaterThan(0);
  }
});
