// StartTune on a LLaVA-OneVision model with image-text data, over gRPC and over Connect (SQLite): the request is
// checked by the trainer's own loader with images confined to the data roots, the job trains the language model and
// succeeds with the vision tower, projector and image_newline unchanged. Images outside the roots (a symlink, `..`,
// an absolute path), missing or undecodable are INVALID_ARGUMENT naming the data file's line and the image.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TuneJob_State as EsState } from '../../src/gen/es/narrowtune/v1/tuning_service_pb.js';
import { TuneJob_State } from '../../src/gen/narrowtune/v1/tuning_service.js';
import type { Receipt } from '../../src/trainer/receipt.js';
import { TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';
import { failure, waitFor } from './client.js';
import { connectViolations, COUNTS, jsonl, type LlavaServer, squares, startLlavaServer, stopLlavaServer } from './llava-server.js';

let s: LlavaServer;
const hp = { steps: 3, learningRate: 1e-2, batchSize: 2, seqLen: 96 };
const line = (image: string, n: number) => ({ image, conversations: [{ from: 'human', value: '<image>\nHow many squares?' }, { from: 'gpt', value: `${COUNTS[n - 1]}.` }] });

beforeAll(async () => {
  s = await startLlavaServer('nt-llava-start-');
  // The data file lies in root/data; its images in root/images (absolute paths: inside the data roots, outside the data
  // file's directory, which the job may read only because the server passes it the roots) and one beside it.
  await mkdir(join(s.root, 'data'));
  await squares(join(s.root, 'data', 'local.png'), 2, 32);
  await jsonl(join(s.root, 'data', 'count.jsonl'), [
    line(join(s.root, 'images', 'sq1.png'), 1),
    line(join(s.root, 'images', 'sq2.png'), 2),
    line(join(s.root, 'images', 'sq3.png'), 3),
    line('local.png', 2),
  ]);
  const bad = async (name: string, image: string) => jsonl(join(s.root, 'data', `${name}.jsonl`), [line('local.png', 2), line(image, 1)]);
  await bad('escape', join(s.root, 'images', 'escape.png'));
  await bad('dotdot', '../images/sq1.png');
  await bad('abs-secret', join(s.outside, 'secret.png'));
  await bad('abs-nothing', join(s.outside, 'nothing.png'));
  await bad('missing', 'nope.png');
  await bad('cut', join(s.root, 'images', 'cut.png'));
}, 60_000);
afterAll(() => stopLlavaServer(s));

async function receiptOf(outputPath: string): Promise<Receipt> {
  return JSON.parse(await readFile(join(outputPath, 'narrowtune.json'), 'utf8')) as Receipt;
}

function expectVisionUnchanged(r: Receipt): void {
  expect(r.vision).toMatchObject({ unchanged: true });
  expect(r.vision!.tower.sha256_after).toBe(r.vision!.tower.sha256_before);
  expect(r.vision!.projector.sha256_after).toBe(r.vision!.projector.sha256_before);
  expect(r.vision!.image_newline!.sha256_after).toBe(r.vision!.image_newline!.sha256_before);
  expect(r.data_stats).toMatchObject({ form: 'llava_conversations', examples: 4, images: 4 });
  expect(r.trainable.length).toBeGreaterThan(0);
  expect(r.trainable.every((n) => /^model\.layers\.\d+\.mlp\.(gate|up)_proj\.weight$/.test(n))).toBe(true);
}

describe('StartTune with a LLaVA model and image-text data', () => {
  it('over gRPC and Connect: accepted, trained, SUCCEEDED with the vision tower, projector and image_newline unchanged', async () => {
    // Both jobs at once: the server trains two at a time.
    const viaGrpc = await s.grpc.startTune({ baseModel: { source: { $case: 'path', value: 'llava' } }, trainingData: 'data/count.jsonl', hyperparameters: hp });
    const viaConnect = await s.connect.startTune({ baseModel: { source: { case: 'path', value: 'llava' } }, trainingData: 'data/count.jsonl', hyperparameters: hp });
    expect(viaGrpc.state).toBe(TuneJob_State.PENDING);
    expect(viaConnect.job?.state).toBe(EsState.PENDING);

    const events = await s.grpc.stream(viaGrpc.name);
    expect(events.flatMap((e) => (e.event?.$case === 'step' ? [e.event.value.step] : []))).toEqual([1, 2, 3]);
    const done = await s.grpc.getJob(viaGrpc.name);
    expect(done.error).toBeUndefined();
    expect(done.state).toBe(TuneJob_State.SUCCEEDED);
    expectVisionUnchanged(await receiptOf(done.outputPath));
    // The output keeps the input's form: a llava_onevision config with its preprocessor.
    expect(JSON.parse(await readFile(join(done.outputPath, 'config.json'), 'utf8')).model_type).toBe('llava_onevision');
    await readFile(join(done.outputPath, 'preprocessor_config.json'));

    const name = viaConnect.job!.name;
    const other = await waitFor(async () => {
      const { job } = await s.connect.getTuneJob({ name });
      return job && job.state !== EsState.PENDING && job.state !== EsState.RUNNING && job;
    }, 30_000);
    expect(other.state).toBe(EsState.SUCCEEDED);
    expectVisionUnchanged(await receiptOf(other.outputPath));
  }, 40_000);

  const cases: [file: string, description: RegExp][] = [
    ['escape', /^data\/escape\.jsonl:2: image "images\/escape\.png" \(.*secret\.png\): outside the allowed directories \(data, \.\)$/],
    ['dotdot', /^data\/dotdot\.jsonl:2: image "\.\.\/images\/sq1\.png": "\.\." is not allowed in image paths$/],
    ['abs-secret', /^data\/abs-secret\.jsonl:2: image ".*outside\/secret\.png": outside the allowed directories \(data, \.\)$/],
    ['abs-nothing', /^data\/abs-nothing\.jsonl:2: image ".*outside\/nothing\.png": outside the allowed directories \(data, \.\)$/],
    ['missing', /^data\/missing\.jsonl:2: image "nope\.png" \(data\/nope\.png\): no such file$/],
    // The header reads (the job's positions are counted from it); the pixels do not.
    ['cut', /^data\/cut\.jsonl:2: image "images\/cut\.png": cannot decode/],
  ];

  const llava = { source: { $case: 'path' as const, value: 'llava' } };

  it('gRPC: an image outside the data roots, missing or undecodable is INVALID_ARGUMENT naming the line and the image', async () => {
    const failures = await Promise.all(cases.map(([file]) => failure(s.grpc.startTune({ baseModel: llava, trainingData: `data/${file}.jsonl`, hyperparameters: hp }))));
    failures.forEach((f, i) => {
      const [file, description] = cases[i];
      expect(f.code, file).toBe(grpc.status.INVALID_ARGUMENT);
      expect(f.violations, file).toEqual([{ field: 'training_data', description: expect.stringMatching(description) }]);
      // Messages name files relative to the roots, never where the roots are.
      expect(f.message).not.toContain(s.root);
    });
    // Whether a file exists outside the roots is not told: the same answer for one that does and one that does not.
    const answer = (file: string, word: string) => failures[cases.findIndex(([f]) => f === file)].violations[0].description.replaceAll(word, 'X');
    expect(answer('abs-secret', 'secret')).toBe(answer('abs-nothing', 'nothing'));
  }, 30_000);

  it('Connect: the same answers', async () => {
    for (const [file, description] of cases.filter(([f]) => f === 'escape' || f === 'cut')) {
      const v = await connectViolations(s.connect.startTune({ baseModel: { source: { case: 'path', value: 'llava' } }, trainingData: `data/${file}.jsonl`, hyperparameters: hp }));
      expect(v, file).toEqual([{ field: 'training_data', description: expect.stringMatching(description) }]);
    }
  }, 30_000);

  it("the trainer's refusals for LLaVA models come at StartTune: vision-only include patterns, image data for a text model", async () => {
    const vision = await failure(s.grpc.startTune({ baseModel: llava, trainingData: 'data/count.jsonl', policy: { include: ['^vision_tower\\.'] }, hyperparameters: hp }));
    expect(vision.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(vision.violations).toEqual([{ field: 'policy.include[0]', description: expect.stringMatching(/names vision tower or projector tensors .*not supported/) }]);

    await tinyModel(s.root, TINY_QWEN2, 'qwen');
    const text = await failure(s.grpc.startTune({ baseModel: { source: { $case: 'path', value: 'qwen' } }, trainingData: 'data/count.jsonl', hyperparameters: hp }));
    expect(text.violations).toEqual([{ field: 'training_data', description: 'data/count.jsonl is image-text data, but the model is text-only (it has no vision tower)' }]);
  }, 20_000);
});
