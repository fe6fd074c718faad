// `narrowtune evaluate` as a user runs it: a separate process on models made by init-model (in this process, to keep
// the test fast); the table, the summary, --json, a LLaVA model's images through --feature-cache, and bad flags named
// in the error.
import { spawnSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVALUATE_FLAGS, parseDatasetSpec } from '../../src/cli/evaluate-command.js';
import { EVALUATE_HELP } from '../../src/cli/evaluate-help.js';
import type { EvaluateResult } from '../../src/eval/evaluate.js';
import { initLlavaModel } from '../../src/model/init-llava.js';
import { tempDir, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let dir: string;
const jsonl = async (name: string, lines: object[]) => {
  const file = join(dir, name);
  await writeFile(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  return file;
};

beforeAll(async () => {
  dir = await tempDir('nt-cli-evaluate-');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('narrowtune evaluate', () => {
  it('text model against its base: a table per dataset, Δ learning / Δ forgetting', async () => {
    await tinyModel(dir, TINY_QWEN2, 'model');
    await tinyModel(dir, { ...TINY_QWEN2, seed: 2 }, 'base');
    const choice = await jsonl('quiz.jsonl', [
      { prompt: 'Two plus two is', choices: [' four', ' five'], answer: ' four' },
      { prompt: 'The sky is', choices: [' blue', ' green', ' red'], answer: 0 },
    ]);
    const gen = await jsonl('recall.jsonl', [{ prompt: 'Say a:', completion: 'a' }, { prompt: 'Say b:', completion: 'b' }]);
    const args = ['evaluate', '--model', join(dir, 'model'), '--base', join(dir, 'base'), '--dataset', `quiz=${choice},kind=choice,role=target`];
    args.push('--dataset', `${gen},kind=generate,role=held-out,max-new-tokens=3,answer-regex=(\\w+),?`, '--seq-len', '32');
    const r = cli(args);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^dataset +kind +role +accuracy +base +Δ acc \(pts\) +Δ loss +KL to base +examples$/);
    expect(lines[1]).toMatch(/^quiz +choice +target +\d+\.\d% +\d+\.\d% +[+−]\d+\.\d +[+−]\d\.\d{4} +\d\.\d{4} +2$/);
    expect(lines[2]).toMatch(/^recall +generate +held-out +\d+\.\d% .* 2$/);
    expect(r.stdout).toMatch(/\n\nΔ learning {3}[+−]\d+\.\d pts \(mean over 1 target dataset\)\nΔ forgetting [+−]\d+\.\d pts \(mean over 1 held-out dataset\)\n$/);
  });

  it('LLaVA model with images: the vision tower runs once per image, and not at all from --feature-cache; --json', async () => {
    const model = join(dir, 'llava');
    await initLlavaModel({ arch: 'llava-onevision', out: model, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, seed: 0 });
    for (const [n, colour] of [[1, { r: 220, g: 20, b: 20 }], [2, { r: 20, g: 20, b: 220 }]] as const) {
      await sharp({ create: { width: 40, height: 32, channels: 3, background: colour } }).png().toFile(join(dir, `img${n}.png`));
    }
    const data = await jsonl('colours.jsonl', [
      { image: 'img1.png', prompt: '<image>\nColour?', choices: ['red', 'blue'], answer: 'red' },
      { image: 'img2.png', prompt: '<image>\nColour?', choices: ['red', 'blue'], answer: 'blue' },
      { image: 'img1.png', prompt: 'Again: <image>', choices: ['red', 'blue'], answer: 0 },
    ]);
    const args = ['evaluate', '--model', model, '--dataset', `${data},kind=choice`, '--seq-len', '96', '--feature-cache', join(dir, 'features')];
    const first = cli(args);
    expect(first.stderr).toBe('');
    expect(first.stdout).toMatch(/^dataset +kind +role +accuracy +loss +examples\ncolours +choice +- +\d+\.\d% +\d+\.\d{4} +3\n\nimages: 2 files, 2 vision tower runs\n$/);
    const second = cli([...args, '--json']);
    expect(second.code).toBe(0);
    const result = JSON.parse(second.stdout) as EvaluateResult;
    expect(result.images).toEqual({ files: 2, visionRuns: 0 });
    const [d] = result.datasets;
    expect([d.name, d.kind, d.role, d.examples, d.answers!.outputs.length, result.deltaLearning]).toEqual(['colours', 'choice', null, 3, 3, null]);
    expect(first.stdout).toContain(`${(100 * d.accuracy).toFixed(1)}%  ${d.loss.toFixed(4)}`);
  });

  it('a bad --dataset fails before any model is read, naming the flag', () => {
    const kind = cli(['evaluate', '--model', join(dir, 'nowhere'), '--dataset', 'q=quiz.jsonl,kind=multiple']);
    expect(kind.code).toBe(2);
    expect(kind.stderr).toBe('narrowtune evaluate: --dataset: q: kind must be one of loss, generate, choice, got "multiple"\n');
  });

  it('--help lists every flag the command takes', () => {
    for (const flag of Object.keys(EVALUATE_FLAGS)) expect(EVALUATE_HELP).toMatch(new RegExp(`^  --${flag} `, 'm'));
  });

  it('--dataset specs: commas stay in paths and regexes; misplaced options are refused', () => {
    expect(parseDatasetSpec('a,b/c.jsonl')).toMatchObject({ name: 'c', path: 'a,b/c.jsonl', kind: 'loss', role: null });
    expect(parseDatasetSpec('n=x.jsonl,role=held-out,kind=generate,answer-regex=(\\d{1,3}),role=x')).toMatchObject({
      name: 'n',
      kind: 'generate',
      role: 'held_out',
      answerRegex: '(\\d{1,3}),role=x',
    });
    expect(() => parseDatasetSpec('n=x.jsonl,max-new-tokens=4')).toThrow('--dataset: n: max-new-tokens applies only to kind=generate');
    expect(() => parseDatasetSpec('n=x.jsonl,kind=generate,max-new-tokens=0')).toThrow('--dataset: n: max-new-tokens must be an integer in [1, 1024], got "0"');
    expect(() => parseDatasetSpec('n=x.jsonl,kind=generate,answer-regex=(')).toThrow(/--dataset: n: answer-regex "\(" is not a valid RE2 regular expression: missing closing \)/);
    expect(() => parseDatasetSpec('n=x.jsonl,role=train')).toThrow('--dataset: n: role must be target or held-out, got "train"');
    expect(() => parseDatasetSpec('n=x.jsonl,kind=choice,kind=loss')).toThrow('--dataset: n: kind given twice');
  });
});
