// The WebGPU execution provider trains the same model to the same numbers as the CPU, probes included. Here it
// runs on Mesa's software Vulkan (lavapipe; .ci/run installs it), which executes the very Dawn/WebGPU kernels a
// GPU would, so a graph the WebGPU provider computes differently shows up without a GPU. Where no Vulkan
// device exists the test is skipped, unless NARROWTUNE_REQUIRE_ALL_TOOLS=1 (CI) makes that a failure.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/graph/graph-builder.js';
import { createSession, gpuPresent } from '../../src/runtime/session.js';
import { needs } from '../support/system-tools.js';
import { heldoutData } from '../telemetry/fixtures.js';
import { repeatData, tempDir, tinyModel } from '../trainer/fixtures.js';
import { expectSameTraining, trainingRun } from './training-run.js';

let dir: string;
let data: string;
let probeData: string;
let model: string;
beforeAll(async () => {
  dir = await tempDir('nt-webgpu-');
  data = await repeatData(dir);
  probeData = await heldoutData(dir);
  model = await tinyModel(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

it.for(['mlp_gate_up', 'full'])('%s: WebGPU reaches the CPU losses, gradient norms, probe figures and weights', needs('vulkan'), async (policy) => {
  const run = (device: 'cpu' | 'webgpu') => trainingRun({ model, data, probeData, out: join(dir, `${policy}-${device}`), device, policy: { preset: policy } });
  const cpu = await run('cpu');
  const gpu = await run('webgpu');
  expect(gpu.provider).toBe('webgpu');
  expectSameTraining(gpu, cpu);
});

it('auto does not pick a software Vulkan device: without a GPU device node it runs on the CPU', async (ctx) => {
  if (gpuPresent()) ctx.skip('this machine has a GPU device node');
  const g = new GraphBuilder('auto-probe');
  g.output(g.add(g.input('x', 'float32', [2]), g.scalar(1)), 'y');
  const h = await createSession(g.toModel(), 'auto');
  expect(h.provider).toBe('cpu');
  await h.session.release();
});
