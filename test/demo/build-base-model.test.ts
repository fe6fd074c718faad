// A (shortened) rebuild of the demo base model: its receipt names the generated inputs by paths relative to the
// model, the same on every machine, and the working folder beside it is gone afterwards.
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildBaseModel } from '../../src/demo/base-model.js';
import type { Receipt } from '../../src/trainer/receipt.js';
import { tempDir } from '../trainer/fixtures.js';

let dir: string;
beforeAll(async () => {
  dir = await tempDir('nt-build-base-');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

it('records the inputs relative to the model and removes their working folder', async () => {
  const out = join(dir, 'base-model');
  await buildBaseModel(out, { steps: 2, evalExamples: 0, writeBuildNotes: false });
  const receipt = JSON.parse(await readFile(join(out, 'narrowtune.json'), 'utf8')) as Receipt;
  expect([receipt.base_model, receipt.data]).toEqual(['../base-model.inputs/init', '../base-model.inputs/pretrain.jsonl']);
  expect(receipt.frozen_unchanged).toBe(true);
  expect(existsSync(`${out}.inputs`)).toBe(false);
});
