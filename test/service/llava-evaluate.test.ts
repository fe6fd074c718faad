// Evaluate on a LLaVA-OneVision model with image datasets (CHOICE and GENERATE), over gRPC and over Connect
// (SQLite): the scores are the evaluation library's own for the same files, images may lie anywhere in the caller's
// data roots, and an image that leads outside them is INVALID_ARGUMENT naming the dataset's line and the image.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EvalDataset_Kind as EsKind } from '../../src/gen/es/narrowtune/v1/tuning_service_pb.js';
import { EvalDataset_Kind, EvaluateRequest } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { evaluate, type EvalDatasetOptions } from '../../src/eval/evaluate.js';
import { failure } from './client.js';
import { connectViolations, COUNTS, jsonl, type LlavaServer, squares, startLlavaServer, stopLlavaServer } from './llava-server.js';

let s: LlavaServer;
const question = '<image>\nHow many squares?';
const DATASETS = [
  { name: 'count-choice', file: 'choice.jsonl', kind: 'choice', proto: EvalDataset_Kind.CHOICE, es: EsKind.CHOICE },
  { name: 'count-generate', file: 'generate.jsonl', kind: 'generate', proto: EvalDataset_Kind.GENERATE, es: EsKind.GENERATE },
] as const;
const settings = { batchSize: 3, seqLen: 128 };

beforeAll(async () => {
  s = await startLlavaServer('nt-llava-eval-');
  // The datasets lie in root/evals; their images in root/images (absolute paths: inside the data roots, outside the
  // datasets' directory) and one beside them.
  const evals = join(s.root, 'evals');
  await mkdir(evals);
  await squares(join(evals, 'local.png'), 2, 32);
  const img = (n: number) => join(s.root, 'images', `sq${n}.png`);
  await jsonl(join(evals, 'choice.jsonl'), [
    { image: img(1), prompt: question, choices: COUNTS, answer: 'One' },
    { image: img(3), prompt: question, choices: COUNTS, answer: 2 },
    { image: 'local.png', prompt: question, choices: COUNTS, answer: 'Two' },
    { prompt: 'No image here:', choices: ['a', 'b'], answer: 0 },
  ]);
  await jsonl(join(evals, 'generate.jsonl'), [
    { image: img(2), prompt: question, completion: 'Two' },
    { images: [img(1), 'local.png'], prompt: 'First <image>, then <image>. Which has more?', completion: 'second' },
  ]);
  await jsonl(join(evals, 'escape.jsonl'), [
    { image: 'local.png', prompt: question, choices: COUNTS, answer: 'Two' },
    { image: join(s.root, 'images', 'escape.png'), prompt: question, choices: COUNTS, answer: 'Two' },
  ]);
}, 60_000);
afterAll(() => stopLlavaServer(s));

const grpcRequest = (datasets: { name: string; file: string; proto: EvalDataset_Kind }[]) =>
  EvaluateRequest.fromPartial({
    model: { source: { $case: 'path', value: 'llava' } },
    datasets: datasets.map((d) => ({ name: d.name, path: `evals/${d.file}`, kind: d.proto, maxNewTokens: d.proto === EvalDataset_Kind.GENERATE ? 3 : undefined })),
    ...settings,
  });

describe('Evaluate with images on a LLaVA model', () => {
  it("over gRPC and Connect: CHOICE and GENERATE with images score as the library scores the same files", async () => {
    const viaGrpc = await s.grpc.evaluate(grpcRequest([...DATASETS]));
    const library = await evaluate({
      model: s.model,
      datasets: DATASETS.map((d): EvalDatasetOptions => ({ name: d.name, path: join(s.root, 'evals', d.file), kind: d.kind, role: null, maxNewTokens: d.kind === 'generate' ? 3 : 32, answerRegex: '' })),
      ...settings,
      device: 'cpu',
      roots: [s.root],
    });
    expect(viaGrpc.results.map((r) => [r.name, r.examples])).toEqual([
      ['count-choice', 4],
      ['count-generate', 2],
    ]);
    viaGrpc.results.forEach((r, i) => {
      const want = library.datasets[i];
      expect(r.loss).toBeGreaterThan(0);
      expect(r.loss).toBeCloseTo(want.loss, 5);
      expect(r.accuracy).toBeCloseTo(want.accuracy, 9);
      expect(r.tokenAccuracy).toBeCloseTo(want.tokenAccuracy, 9);
      expect(Number(r.tokens)).toBe(want.tokens);
    });

    const viaConnect = await s.connect.evaluate({
      model: { source: { case: 'path', value: 'llava' } },
      datasets: DATASETS.map((d) => ({ name: d.name, path: `evals/${d.file}`, kind: d.es, maxNewTokens: d.kind === 'generate' ? 3 : undefined })),
      ...settings,
    });
    expect(viaConnect.results.map((r) => [r.name, r.examples, r.loss, r.accuracy])).toEqual(viaGrpc.results.map((r) => [r.name, r.examples, r.loss, r.accuracy]));
  }, 40_000);

  it('an image that leads outside the data roots through a symlink is INVALID_ARGUMENT naming the line and the image, on both transports', async () => {
    const description = /^evals\/escape\.jsonl:2: image "images\/escape\.png" \(.*secret\.png\): outside the allowed directories/;
    const f = await failure(s.grpc.evaluate(grpcRequest([{ name: 'escape', file: 'escape.jsonl', proto: EvalDataset_Kind.CHOICE }])));
    expect(f.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(f.violations).toEqual([{ field: 'datasets[0].path', description: expect.stringMatching(description) }]);
    expect(f.message).not.toContain(s.root);

    const v = await connectViolations(
      s.connect.evaluate({ model: { source: { case: 'path', value: 'llava' } }, datasets: [{ name: 'escape', path: 'evals/escape.jsonl', kind: EsKind.CHOICE }], ...settings }),
    );
    expect(v).toEqual([{ field: 'datasets[0].path', description: expect.stringMatching(description) }]);
  }, 30_000);
});
