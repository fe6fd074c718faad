// A rebuild of the demo base model, shrunk to a tiny architecture and a few steps: deterministic weights, a receipt
// that names the generated inputs by paths relative to the model, no working folder left behind, and BUILD.md
// describing what was built and how well it scored on every skill.
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildBaseModel, type BuildBaseModelOptions, type BuildBaseModelResult } from '../../src/demo/base-model.js';
import { heldoutSkills, targetSkills } from '../../src/demo/skills.js';
import type { Receipt } from '../../src/trainer/receipt.js';
import { tempDir } from '../trainer/fixtures.js';

const TINY: BuildBaseModelOptions = {
  arch: { hidden: 32, layers: 1, heads: 2, kvHeads: 1, intermediate: 64 },
  steps: 3,
  examplesPerSkill: 16,
  generalExamples: 16,
  evalExamples: 2,
};

let dir: string;
let first: BuildBaseModelResult;
beforeAll(async () => {
  dir = await tempDir('nt-build-base-');
  first = await buildBaseModel(join(dir, 'base-model'), TINY);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

it('records the inputs relative to the model and removes their working folder', async () => {
  const out = join(dir, 'base-model');
  const receipt = JSON.parse(await readFile(join(out, 'narrowtune.json'), 'utf8')) as Receipt;
  expect([receipt.base_model, receipt.data]).toEqual(['../base-model.inputs/init', '../base-model.inputs/pretrain.jsonl']);
  expect(receipt.frozen_unchanged).toBe(true);
  expect(existsSync(`${out}.inputs`)).toBe(false);
});

it('writes BUILD.md with the architecture, the weights hash and a row per skill', async () => {
  expect(first.parameters).toBeLessThan(100_000);
  expect(first.accuracies.map((a) => a.skill)).toEqual([...heldoutSkills, ...targetSkills].map((s) => s.name));
  const notes = await readFile(join(dir, 'base-model', 'BUILD.md'), 'utf8');
  expect(notes).toContain('hidden 32, 1 layers');
  expect(notes).toContain(`${first.parameters.toLocaleString('en-US')} parameters`);
  expect(notes).toContain(first.weightsSha256);
  for (const a of first.accuracies) expect(notes).toMatch(new RegExp(`\\| ${a.skill} \\| ${a.kind} \\| \\d+% \\(2 eval examples\\) \\|`));
});

it('rebuilds the same weights from the same seed, and others from another', async () => {
  const again = await buildBaseModel(join(dir, 'again'), { ...TINY, evalExamples: 0, writeBuildNotes: false });
  expect(again.weightsSha256).toBe(first.weightsSha256);
  const other = await buildBaseModel(join(dir, 'other'), { ...TINY, seed: 8, evalExamples: 0, writeBuildNotes: false });
  expect(other.weightsSha256).not.toBe(first.weightsSha256);
});
