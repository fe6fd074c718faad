// The WebGPU execution provider trains the same model to the same numbers as the CPU. Here it runs on Mesa's
// software Vulkan (lavapipe; .ci/run installs it), which executes the very Dawn/WebGPU kernels a GPU would,
// so a graph the WebGPU provider computes differently shows up without a GPU. Where no Vulkan device
// exists the test is skipped, unless NARROWTUNE_REQUIRE_WEBGPU=1 (CI) makes that a failure.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readSafetensorsFile } from '../../src/model/safetensors-file.js';
import { DEFAULTS, type TuneOptions } from '../../src/trainer/options.js';
import { tune } from '../../src/trainer/trainer.js';
import { repeatData, tempDir, tinyModel } from '../trainer/fixtures.js';
import { WEBGPU_REQUIRED, webgpuUnavailable } from './webgpu-probe.js';

let dir: string;
let data: string;
let base: string;
let unavailable: string | null;
beforeAll(async () => {
  unavailable = await webgpuUnavailable();
  dir = await tempDir('nt-webgpu-');
  data = await repeatData(dir);
  base = await tinyModel(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

interface Run {
  provider: string;
  losses: number[];
  gradNorms: number[];
  tensors: Map<string, Float32Array>;
}

async function train(device: TuneOptions['device'], policy: string): Promise<Run> {
  const out = join(dir, `${policy}-${device}`);
  const run: Run = { provider: '', losses: [], gradNorms: [], tensors: new Map() };
  await tune({ ...DEFAULTS, model: base, data, out, device, policy: { preset: policy }, steps: 4, batchSize: 4, seqLen: 32, optimizer: 'sgd', lr: 0.1, schedule: 'constant', warmupSteps: 0 }, (e) => {
    if (e.type === 'start') run.provider = e.provider;
    if (e.type === 'step') {
      run.losses.push(e.loss);
      run.gradNorms.push(e.gradNorm);
    }
  });
  for (const t of await readSafetensorsFile(join(out, 'model.safetensors'))) {
    run.tensors.set(t.name, new Float32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength)));
  }
  return run;
}

const relErr = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

it.for(['mlp_gate_up', 'full'])('%s: WebGPU reaches the CPU losses, gradient norms and weights', async (policy, ctx) => {
  if (unavailable !== null && !WEBGPU_REQUIRED) ctx.skip(`no Vulkan device for WebGPU here: ${unavailable}`);
  const cpu = await train('cpu', policy);
  const gpu = await train('webgpu', policy);
  expect(gpu.provider).toBe('webgpu');
  expect(gpu.losses).toHaveLength(4);
  // SGD, not AdamW: AdamW divides each gradient by its own magnitude, which turns the float32 rounding noise of
  // near-zero gradients (k_proj.bias: softmax ignores it) into visible weight differences. Four SGD updates at
  // lr 0.1 separate a wrong kernel from float32 reassociation by orders of magnitude.
  for (let i = 0; i < 4; i++) {
    expect(relErr(gpu.losses[i], cpu.losses[i])).toBeLessThan(1e-5);
    expect(relErr(gpu.gradNorms[i], cpu.gradNorms[i])).toBeLessThan(1e-4);
  }
  expect([...gpu.tensors.keys()].sort()).toEqual([...cpu.tensors.keys()].sort());
  for (const [name, w] of cpu.tensors) {
    const g = gpu.tensors.get(name)!;
    let worst = 0;
    for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(g[i] - w[i]));
    expect(worst, name).toBeLessThan(1e-5);
  }
});
