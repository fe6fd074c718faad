// The two lowerings of attention and cross-entropy (GraphBuilder.kernels) train identically on the CPU: the
// portable one is what WebGPU runs, so it is checked here on every machine, train step and probe graph alike.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, it } from 'vitest';
import { heldoutData } from '../telemetry/fixtures.js';
import { repeatData, tempDir, tinyModel, TINY_LLAMA } from '../trainer/fixtures.js';
import { expectSameTraining, trainingRun } from './training-run.js';

let dir: string;
let data: string;
let probeData: string;
beforeAll(async () => {
  dir = await tempDir('nt-kernels-');
  data = await repeatData(dir);
  probeData = await heldoutData(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

it.for([
  ['qwen2', 'mlp_gate_up'],
  ['llama', 'full'],
] as const)('%s %s: portable kernels give the fused kernels’ training and probes', async ([arch, policy]) => {
  const model = await tinyModel(dir, arch === 'llama' ? TINY_LLAMA : undefined, `${arch}-base`);
  const run = (kernels: 'fused' | 'portable') => trainingRun({ model, data, probeData, out: join(dir, `${arch}-${kernels}`), kernels, policy: { preset: policy } });
  expectSameTraining(await run('portable'), await run('fused'));
});
