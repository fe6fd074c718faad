// `bench --profile`: one step of a tiny row, profiled in a row process that runs the trainer's own setup and
// optimizer step; every node of onnxruntime's trace is attributed to the op rule whose forward builder or VJP
// emitted it (heard from the tape while the graph was built). Needs nothing beyond Node.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ProfileSummary } from '../../src/bench/profile.js';
import { tempDir } from '../trainer/fixtures.js';
import { runBench } from './bench-process.js';

let dir: string;
beforeAll(async () => {
  dir = await tempDir('nt-bench-profile-');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

it('profiles a tiny row and attributes its kernel time to forward, backward and update', async () => {
  const prof = join(dir, 'prof');
  const { code, output } = await runBench(['--config', 'tiny', '--policy', 'mlp_gate_up', '--warmup', '1', '--profile', prof, '--cache-dir', join(dir, 'cache')]);
  expect(code, output).toBe(0);
  expect(output).toMatch(/## tiny mlp_gate_up: session\.run \d+ ms/);

  const summary = JSON.parse(await readFile(join(prof, 'tiny-mlp_gate_up-summary.json'), 'utf8')) as ProfileSummary & { stepMs: number[] };
  expect(summary.stepMs).toHaveLength(2); // --warmup 1, then the profiled step
  const sources = summary.bySource.map((s) => s.source);
  expect(sources).toEqual(expect.arrayContaining(['fwd linear', 'bwd linear', 'fwd attention', 'bwd attention', 'fwd rmsnorm', 'update']));
  expect(sources).not.toContain('unknown');
  const phases = summary.byPhase.map((p) => p.phase);
  expect(phases).toEqual(expect.arrayContaining(['forward', 'backward', 'clip + optimizer + outputs', 'outside kernels (executor)']));
  expect(summary.kernelMs).toBeGreaterThan(0);
});
