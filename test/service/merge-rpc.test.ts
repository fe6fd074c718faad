// Issue 14 through a real server: MergeModels over gRPC and Connect (model roots respected, field violations,
// roots hidden in errors), and an LwF job whose steps report the cross-entropy and the KL and whose resource shows
// the method.
import * as grpc from '@grpc/grpc-js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DeepPartial, MergeModelsRequest, type MergeModelsResponse, TuneJob_State } from '../../src/gen/narrowtune/v1/tuning_service.js';
import type { MergeReceipt } from '../../src/model/merge.js';
import { TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';
import { failure, waitFor } from './client.js';
import { startTinyServer, stopTinyServer, type TinyServer } from './tiny-server.js';

let t: TinyServer;
let tuned: string;
beforeAll(async () => {
  t = await startTinyServer('nt-merge-rpc-', { web: { port: 0 } });
  tuned = await tinyModel(t.dir, { ...TINY_QWEN2, seed: 5 }, 'tuned');
});
afterAll(async () => stopTinyServer(t));

const atPath = (value: string) => ({ source: { $case: 'path' as const, value } });
const mergeModels = (r: DeepPartial<MergeModelsRequest>) =>
  new Promise<MergeModelsResponse>((resolve, reject) => t.client.raw.mergeModels(MergeModelsRequest.fromPartial(r), (e, res) => (e ? reject(e) : resolve(res))));

describe('MergeModels', () => {
  it('writes the merged model inside the model roots and answers with its hashes', async () => {
    const res = await mergeModels({ baseModel: atPath('base'), tunedModel: atPath('tuned'), alpha: 0.25, outputPath: 'merged' });
    expect(res).toMatchObject({ outputPath: 'merged', tensors: expect.any(Number), interpolatedTensors: expect.any(Number) });
    expect(res.interpolatedTensors).toBeGreaterThan(0);
    const receipt = JSON.parse(await readFile(join(t.dir, 'merged', 'narrowtune.json'), 'utf8')) as MergeReceipt;
    expect(receipt).toMatchObject({ method: 'wise_ft', alpha: 0.25, base: { sha256: res.baseSha256 }, tuned: { sha256: res.tunedSha256 } });
    // Once written it is a model like any other: a merge of the merge names it by path.
    const again = await mergeModels({ baseModel: atPath('base'), tunedModel: atPath('merged'), alpha: 1, outputPath: 'merged2' });
    expect(again.tunedSha256).not.toBe(res.tunedSha256);
  });

  it('lists every violation; paths outside the roots are refused and the roots never named', async () => {
    const f = await failure(mergeModels({ baseModel: atPath('/etc'), tunedModel: atPath('missing'), alpha: 1.5, outputPath: '../escape' }));
    expect(f.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(f.violations.map((v) => v.field).sort()).toEqual(['alpha', 'base_model.path', 'output_path', 'tuned_model.path']);
    expect(f.message).not.toContain(t.dir);
  });

  it('answers over Connect too', async () => {
    const res = await fetch(`${t.server.webUrl}/narrowtune.v1.TuningService/MergeModels`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ baseModel: { path: 'base' }, tunedModel: { path: 'tuned' }, alpha: 0.5, outputPath: 'merged-web' }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ outputPath: 'merged-web', interpolatedTensors: expect.any(Number) });
  });
});

describe('MergeModels with a LoRA job', () => {
  it("merges a job's PEFT adapter with its base: only the adapted tensors change", async () => {
    const job = await t.client.startTune({
      baseModel: atPath(t.base),
      trainingData: t.data,
      hyperparameters: { steps: 2, batchSize: 2, learningRate: 1e-2, warmupSteps: 0 },
      adapter: { rank: 2, alpha: 4, targets: ['layers\\.0\\.mlp\\.up_proj'] },
    });
    expect(job.method).toMatchObject({ kind: 'lora', summary: 'lora r=2 alpha=4 on layers\\.0\\.mlp\\.up_proj' });
    const done = await waitFor(async () => {
      const j = await t.client.getJob(job.name);
      return j.state >= TuneJob_State.SUCCEEDED && j;
    });
    expect(done.state, done.error?.message).toBe(TuneJob_State.SUCCEEDED);
    const res = await mergeModels({ baseModel: atPath('base'), tunedModel: { source: { $case: 'job', value: job.name } }, alpha: 0.5, outputPath: 'merged-lora' });
    expect(res.interpolatedTensors).toBe(1);
    const receipt = JSON.parse(await readFile(join(t.dir, 'merged-lora', 'narrowtune.json'), 'utf8')) as MergeReceipt;
    expect(receipt.tuned.adapter).toMatchObject({ rank: 2, alpha: 4 });
  });
});

describe('an LwF job', () => {
  it('reports the cross-entropy and the KL at every step, and shows its method', async () => {
    const job = await t.client.startTune({
      baseModel: atPath(t.base),
      trainingData: t.data,
      hyperparameters: { steps: 4, batchSize: 2, learningRate: 1e-2 },
      lwf: { weight: 0.5, temperature: 2 },
    });
    expect(job.method).toMatchObject({ kind: 'policy', policy: 'mlp_gate_up', lwf: { weight: 0.5, temperature: 2 }, summary: 'policy mlp_gate_up + lwf weight=0.5 T=2 teacher=base' });
    const done = await waitFor(async () => {
      const j = await t.client.getJob(job.name);
      return j.state >= TuneJob_State.SUCCEEDED && j;
    });
    expect(done.state).toBe(TuneJob_State.SUCCEEDED);
    expect(done.method?.summary).toBe(job.method?.summary);
    const steps = (await t.client.stream(job.name)).flatMap((e) => (e.event?.$case === 'step' ? [e.event.value] : []));
    expect(steps).toHaveLength(4);
    for (const s of steps) expect(s.loss).toBeCloseTo(s.crossEntropy! + 0.5 * 4 * s.lwfKl!, 6);
    expect(steps[0].lwfKl).toBe(0); // the model starts as its teacher
    expect(steps[3].lwfKl).toBeGreaterThan(0);
  });
});
