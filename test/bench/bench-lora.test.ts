// LoRA rows in the benchmark: `PRESET+loraR` trains rank-R adapters on the preset's projections with the real
// trainer, reports the adapters' parameter count, and skips the PyTorch baseline (which trains weights).
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { benchMethod, benchTuneOptions, BENCH_CONFIGS } from '../../src/bench/configs.js';
import { tempDir } from '../trainer/fixtures.js';
import { runBench } from './bench-process.js';

let dir: string;
beforeAll(async () => {
  dir = await tempDir('nt-bench-lora-');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

it('PRESET+loraR names a LoRA row; anything else is a preset or nothing', () => {
  expect(benchMethod('mlp_gate_up+lora256')).toEqual({ preset: 'mlp_gate_up', lora: { rank: 256, alpha: 32, dropout: 0, targets: [] } });
  expect(benchMethod('full')).toEqual({ preset: 'full', lora: null });
  expect(benchMethod('mlp+lora')).toBeNull();
  expect(benchMethod('everything+lora8')).toBeNull();
  const o = benchTuneOptions('m', 'd', 'o', BENCH_CONFIGS.tiny, 'sa_proj+lora8', 3, { device: 'cpu', kernels: 'auto', ortThreads: null, frozenPrecision: 'float32' });
  expect([o.policy, o.lora?.rank]).toEqual([{ preset: 'sa_proj' }, 8]);
});

it('a tiny LoRA row runs beside its preset and reports the adapters’ parameters', async () => {
  const json = join(dir, 'bench.json');
  const { code, output } = await runBench(['--config', 'tiny', '--policy', 'mlp_gate_up', '--policy', 'mlp_gate_up+lora4', '--steps', '2', '--warmup', '1', '--json', json, '--cache-dir', join(dir, 'cache')]);
  expect(code, output).toBe(0);
  const report = JSON.parse(await readFile(json, 'utf8')) as { rows: { policy: string; status: string; torch: unknown; narrowtune: { trainableParameters: number } }[] };
  expect(report.rows.map((r) => [r.policy, r.status])).toEqual([['mlp_gate_up', 'ok'], ['mlp_gate_up+lora4', 'ok']]);
  // tiny: hidden 64, 2 layers; gate and up [I, 64] train whole, or as A [4, 64] + B [I, 4].
  const [full, lora] = report.rows.map((r) => r.narrowtune.trainableParameters);
  const intermediate = full / (2 * 2 * 64);
  expect(lora).toBe(2 * 2 * (4 * 64 + intermediate * 4));
});
