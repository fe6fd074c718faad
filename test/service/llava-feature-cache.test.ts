// `serve --feature-cache`: Evaluate calls and training jobs share one on-disk image-feature cache, so a job on images
// an Evaluate call has seen runs no vision tower; each tenant has a subdirectory of its own.
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EvalDataset_Kind, EvaluateRequest, TuneJob_State } from '../../src/gen/narrowtune/v1/tuning_service.js';
import type { Receipt } from '../../src/trainer/receipt.js';
import { tenantFeatureCache } from '../../src/trainer/options.js';
import { tempDir } from '../trainer/fixtures.js';
import { COUNTS, jsonl, type LlavaServer, startLlavaServer, stopLlavaServer } from './llava-server.js';

let s: LlavaServer;
let cache: string;
const image = (n: number) => join(s.root, 'images', `sq${n}.png`);

beforeAll(async () => {
  cache = await tempDir('nt-feature-cache-');
  s = await startLlavaServer('nt-llava-cache-', { featureCache: cache });
  await jsonl(join(s.root, 'choice.jsonl'), [1, 2, 3].map((n) => ({ image: image(n), prompt: '<image>\nHow many squares?', choices: COUNTS, answer: n - 1 })));
  await jsonl(join(s.root, 'count.jsonl'), [1, 2, 3].map((n) => ({ image: image(n), conversations: [{ from: 'human', value: '<image>\nHow many squares?' }, { from: 'gpt', value: COUNTS[n - 1] }] })));
}, 60_000);
afterAll(async () => {
  await stopLlavaServer(s);
  await rm(cache, { recursive: true, force: true });
});

describe('serve --feature-cache', () => {
  it('Evaluate writes each image once; a job on the same images then runs no vision tower', async () => {
    const r = await s.grpc.evaluate(
      EvaluateRequest.fromPartial({
        model: { source: { $case: 'path', value: 'llava' } },
        datasets: [{ name: 'count', path: 'choice.jsonl', kind: EvalDataset_Kind.CHOICE }],
        batchSize: 3,
        seqLen: 96,
      }),
    );
    expect(r.results.map((d) => d.examples)).toEqual([3]);
    // Without authentication there are no tenants: the directory itself.
    const files = (await readdir(cache)).sort();
    expect(files).toHaveLength(3);

    const job = await s.grpc.startTune({ baseModel: { source: { $case: 'path', value: 'llava' } }, trainingData: 'count.jsonl', hyperparameters: { steps: 2, learningRate: 1e-2, batchSize: 2, seqLen: 96 } });
    await s.grpc.stream(job.name);
    const done = await s.grpc.getJob(job.name);
    expect(done.state).toBe(TuneJob_State.SUCCEEDED);
    const receipt = JSON.parse(await readFile(join(done.outputPath, 'narrowtune.json'), 'utf8')) as Receipt;
    expect(receipt.data_stats).toMatchObject({ images: 3, vision_runs: 0 });
    expect((await readdir(cache)).sort()).toEqual(files);
  }, 60_000);

  it('a tenant caches under DIR/tenants/NAME', () => {
    expect(tenantFeatureCache('/c', 'acme')).toBe(join('/c', 'tenants', 'acme'));
    expect(tenantFeatureCache('/c', null)).toBe('/c');
    expect(tenantFeatureCache(undefined, 'acme')).toBeNull();
  });
});
