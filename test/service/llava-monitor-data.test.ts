// StartTune on a LLaVA-OneVision model with image-text validation and probe files: checked as the training file is
// (the trainer's own loader, images confined to the data roots and decoded), each problem INVALID_ARGUMENT on the
// file's own field naming its line and image; good files train with validation and drift probes over the images.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TuneJob_State } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { failure } from './client.js';
import { COUNTS, jsonl, type LlavaServer, startLlavaServer, stopLlavaServer } from './llava-server.js';

let s: LlavaServer;
const hp = { steps: 2, learningRate: 1e-2, batchSize: 2, seqLen: 96 };
const llava = { source: { $case: 'path' as const, value: 'llava' } };
const line = (image: string, n: number) => ({ image, conversations: [{ from: 'human', value: '<image>\nHow many squares?' }, { from: 'gpt', value: `${COUNTS[n - 1]}.` }] });

beforeAll(async () => {
  s = await startLlavaServer('nt-llava-monitors-');
  await mkdir(join(s.root, 'data'));
  const img = (name: string) => join(s.root, 'images', name);
  await jsonl(join(s.root, 'data', 'count.jsonl'), [line(img('sq1.png'), 1), line(img('sq2.png'), 2)]);
  await jsonl(join(s.root, 'data', 'held-out.jsonl'), [line(img('sq3.png'), 3), line(img('sq1.png'), 1)]);
  await jsonl(join(s.root, 'data', 'missing.jsonl'), [line(img('sq3.png'), 3), line('nope.png', 2)]);
  await jsonl(join(s.root, 'data', 'cut.jsonl'), [line(img('sq3.png'), 3), line(img('cut.png'), 2)]);
  await jsonl(join(s.root, 'data', 'escape.jsonl'), [line(img('escape.png'), 2)]);
}, 60_000);
afterAll(() => stopLlavaServer(s));

describe('StartTune with image-text validation and probe files on a LLaVA model', () => {
  it('a bad image is INVALID_ARGUMENT on validation_data or probe_data, naming the line and the image; every bad file is listed', async () => {
    const missing = await failure(s.grpc.startTune({ baseModel: llava, trainingData: 'data/count.jsonl', validationData: 'data/missing.jsonl', hyperparameters: hp }));
    expect(missing.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(missing.violations).toEqual([{ field: 'validation_data', description: 'data/missing.jsonl:2: image "nope.png" (data/nope.png): no such file' }]);

    // An undecodable image is found by decoding it (its header reads), one outside the data roots before any read.
    const both = await failure(s.grpc.startTune({ baseModel: llava, trainingData: 'data/count.jsonl', validationData: 'data/escape.jsonl', probeData: 'data/cut.jsonl', hyperparameters: hp }));
    expect(both.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(both.violations).toEqual([
      { field: 'validation_data', description: expect.stringMatching(/^data\/escape\.jsonl:1: image "images\/escape\.png" \(.*secret\.png\): outside the allowed directories/) },
      { field: 'probe_data', description: expect.stringMatching(/^data\/cut\.jsonl:2: image "images\/cut\.png": cannot decode/) },
    ]);
    expect(both.message).not.toContain(s.root);
  }, 30_000);

  it('good files: the job reports validation and drift probes over the images and SUCCEEDS', async () => {
    const job = await s.grpc.startTune({ baseModel: llava, trainingData: 'data/count.jsonl', validationData: 'data/held-out.jsonl', probeData: 'data/held-out.jsonl', hyperparameters: { ...hp, warmupSteps: 1, evalEvery: 1, probeEvery: 1 } });
    const events = await s.grpc.stream(job.name);
    const validation = events.flatMap((e) => (e.event?.$case === 'validation' ? [e.event.value] : []));
    const probes = events.flatMap((e) => (e.event?.$case === 'probe' ? [e.event.value] : []));
    expect(validation.map((v) => v.step)).toEqual([1, 2]);
    expect(probes.map((p) => p.step)).toEqual([1, 2]);
    expect(validation.every((v) => Number.isFinite(v.loss) && v.loss > 0)).toBe(true);
    // Step 1 is the warm-up's, at learning rate 0: its weights are the base's. Step 2's have moved.
    expect(probes[0]).toMatchObject({ klToBase: 0, numberMassDelta: 0, heldoutLossDelta: 0, top1Agreement: 1 });
    expect(probes[1].klToBase).toBeGreaterThan(1e-5);
    expect(probes[1].heldoutLossBase).toBe(probes[0].heldoutLossBase);
    const done = await s.grpc.getJob(job.name);
    expect(done.error).toBeUndefined();
    expect(done.state).toBe(TuneJob_State.SUCCEEDED);
  }, 40_000);
});
