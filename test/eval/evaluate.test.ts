// Evaluate on tiny models whose answers mean something: a random model pretrained on copy/reverse skills (the
// base) and that base fully tuned on counting (learns some counting, forgets the skills). GENERATE outputs, CHOICE
// log-likelihoods and the drift figures are recomputed independently in float64 PyTorch
// (test/reference/torch_eval.py, torch_figures.py); the summary is checked against the per-dataset figures; and the
// gRPC handler's validation and mapping are checked over loopback.
import { execFileSync } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leadingSpecialIds, loadDataset, type Example } from '../../src/data/dataset.js';
import { loadTokenizer, type TextTokenizer } from '../../src/data/tokenizer.js';
import { paramsOf } from '../../src/graph/params.js';
import { baseParamsOf, evaluate, type DatasetScore, type EvalDatasetOptions, type EvaluateResult } from '../../src/eval/evaluate.js';
import { stopIdsOf } from '../../src/eval/generate.js';
import { EvalDataset_Kind, EvalDataset_Role, EvaluateRequest } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { startServer } from '../../src/service/server.js';
import { needs, PYTHON } from '../support/system-tools.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { isNumberToken } from '../../src/eval/token-classes.js';
import { DEFAULTS } from '../../src/trainer/options.js';
import { tune } from '../../src/trainer/trainer.js';
import { close, expectTorchFigures, type TorchFigures } from '../reference/torch-figures.js';
import { connect, failure } from '../service/client.js';
import { countingData, heldoutData } from '../telemetry/fixtures.js';
import { tempDir, TINY_LLAMA, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';

const TORCH_EVAL = new URL('../reference/torch_eval.py', import.meta.url).pathname;
const TORCH_FIGURES = new URL('../reference/torch_figures.py', import.meta.url).pathname;
const VOWEL = { name: 'vowel', pattern: '^[aeiou]$' };
const SEQ = 48;
const FIRST_LETTER = '^\\s*(\\w)';
const WORDS = ['cat', 'dog', 'sun', 'red', 'sky', 'map'];
const reverse = (w: string) => [...w].reverse().join('');

let dir: string;
let raw: string;
let base: string;
let tuned: string;
let tokenizer: TextTokenizer;
let files: { counting: string; heldout: string; choice: string; first: string };
let result: EvaluateResult;

const ds = (name: string, path: string, kind: EvalDatasetOptions['kind'], role: EvalDatasetOptions['role'], extra: Partial<EvalDatasetOptions> = {}): EvalDatasetOptions => ({
  name,
  path,
  kind,
  role,
  maxNewTokens: 8,
  answerRegex: '',
  ...extra,
});
const run = (model: string, baseModel: string | null, datasets: EvalDatasetOptions[], tokenClasses = [VOWEL]) =>
  evaluate({ model, base: baseModel, datasets, tokenClasses: baseModel ? tokenClasses : [], batchSize: 5, seqLen: SEQ, device: 'cpu' });
const byName = (r: EvaluateResult, name: string): DatasetScore => r.datasets.find((d) => d.name === name)!;

beforeAll(async () => {
  dir = await tempDir('nt-evaluate-');
  const heldout = await heldoutData(dir);
  files = {
    counting: await countingData(dir),
    heldout,
    // The held-out prompts with answers by log-likelihood: the right word, its reverse and another word.
    choice: join(dir, 'choice.jsonl'),
    // The held-out prompts whose expected answer is the first letter of the word: right only through answer_regex.
    first: join(dir, 'first.jsonl'),
  };
  const choices = WORDS.map((w, i) =>
    i % 2 === 0
      ? { prompt: `copy: ${w} =`, choices: [` ${reverse(w)}`, ` ${w}`, ` ${WORDS[(i + 2) % 6]}`], answer: ` ${w}` }
      : { prompt: `reverse: ${w} =`, choices: [` ${w}`, ` ${reverse(w)}`, ` ${WORDS[(i + 1) % 6]}`], answer: 1 },
  );
  await writeFile(files.choice, choices.map((c) => JSON.stringify(c)).join('\n') + '\n');
  const held = (await readFile(heldout, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { prompt: string; completion: string });
  await writeFile(files.first, held.map((h) => JSON.stringify({ prompt: h.prompt, completion: h.completion.trim()[0] })).join('\n') + '\n');

  raw = await tinyModel(dir, { ...TINY_QWEN2, hidden: 64, intermediate: 128 }, 'raw');
  base = join(dir, 'base');
  await tune({ ...DEFAULTS, model: raw, data: heldout, out: base, policy: { include: ['.'] }, lr: 1e-2, steps: 150, batchSize: 8, seqLen: SEQ, warmupSteps: 5 });
  tuned = join(dir, 'tuned');
  await tune({ ...DEFAULTS, model: base, data: files.counting, out: tuned, policy: { preset: 'full' }, lr: 3e-3, steps: 40, batchSize: 8, seqLen: SEQ, schedule: 'constant', warmupSteps: 0 });
  tokenizer = await loadTokenizer(base);
  result = await run(tuned, base, [
    ds('counting', files.counting, 'generate', 'target', { maxNewTokens: 4 }),
    ds('copy-reverse', files.heldout, 'generate', 'held_out'),
    ds('choice', files.choice, 'choice', 'held_out'),
    ds('copy-reverse-loss', files.heldout, 'loss', null),
    ds('first-letter', files.first, 'generate', null, { answerRegex: FIRST_LETTER }),
  ]);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function python<T>(script: string, spec: unknown): Promise<T> {
  const file = join(dir, `spec-${Math.random()}.json`);
  await writeFile(file, JSON.stringify(spec));
  execFileSync(PYTHON, [script, file, `${file}.out`]);
  return JSON.parse(await readFile(`${file}.out`, 'utf8')) as T;
}

const targetsOf = (e: Example) => e.labels.slice(1).concat(-100);
async function lines<T>(file: string): Promise<T[]> {
  return (await readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as T);
}

interface ChoiceLine {
  prompt: string;
  choices: string[];
  answer: number | string;
}

const GENERATE_SETS = [
  { name: 'counting', file: () => files.counting, maxNewTokens: 4, regex: null },
  { name: 'copy-reverse', file: () => files.heldout, maxNewTokens: 8, regex: null },
  { name: 'first-letter', file: () => files.first, maxNewTokens: 8, regex: new RegExp(FIRST_LETTER, 'u') },
] as const;

/**
 * One float64 run per model (torch_eval.py): naive greedy decodes of every GENERATE prompt and the log-likelihood
 * of every (prompt, choice) row, all encoded here from the raw lines.
 */
const references = new Map<string, Promise<{ texts: Record<string, string[]>; logliks: number[][] }>>();
function reference(model: string) {
  if (!references.has(model)) {
    references.set(model, (async () => {
      const leading = leadingSpecialIds(tokenizer);
      const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
      const sets = await Promise.all(GENERATE_SETS.map(async (s) => ({ ...s, data: await lines<{ prompt: string }>(s.file()) })));
      const prompts = sets.flatMap((s) => s.data.map((d) => [...leading, ...encode(d.prompt)]));
      const budgets = sets.flatMap((s) => s.data.map(() => s.maxNewTokens));
      const choice = await lines<ChoiceLine>(files.choice);
      const rows = choice.flatMap((d) =>
        d.choices.map((c) => {
          const p = [...leading, ...encode(d.prompt)];
          const ids = encode(c);
          return { input_ids: [...p, ...ids], targets: [...p.slice(1).map(() => -100), ...ids, -100] };
        }),
      );
      const out = await python<{ generated: number[][]; logliks: number[] }>(TORCH_EVAL, {
        model_dir: model,
        rows,
        prompts,
        max_new_tokens: budgets,
        stop_ids: await stopIdsOf(model),
      });
      const texts: Record<string, string[]> = {};
      let at = 0;
      for (const s of sets) {
        texts[s.name] = out.generated.slice(at, at + s.data.length).map((ids) => tokenizer.decode(ids, { skipSpecialTokens: true }));
        at += s.data.length;
      }
      let row = 0;
      return { texts, logliks: choice.map((d) => out.logliks.slice(row, (row += d.choices.length))) };
    })());
  }
  return references.get(model)!;
}

describe('GENERATE', () => {
  it('outputs equal a naive float64 greedy decode, and accuracy is their exact-match rate (also through answer_regex)', needs('torch'), async () => {
    for (const [model, pick] of [[tuned, (d: DatasetScore) => d], [base, (d: DatasetScore) => d.base!]] as const) {
      const ref = await reference(model);
      for (const s of GENERATE_SETS) {
        const data = await lines<{ completion: string }>(s.file());
        const texts = ref.texts[s.name];
        const got = pick(byName(result, s.name));
        expect(got.answers!.outputs).toEqual(texts);
        const right = texts.filter((t, k) => {
          const m = s.regex ? s.regex.exec(t) : null;
          return (s.regex ? (m ? m[1] : null) : t.trim()) === data[k].completion.trim();
        }).length;
        expect(got.accuracy).toBe(right / data.length);
      }
    }
    // The test has power only if the outputs vary: the tuned model half-learned counting and lost the skills.
    expect(byName(result, 'counting').accuracy).toBeGreaterThan(0);
    expect(byName(result, 'copy-reverse').base!.accuracy).toBe(1);
  });

  it('a model pretrained on a skill gets accuracy 1 on it and the raw model about 0; answer_regex decides what is compared', async () => {
    const r = await run(base, raw, [
      ds('copy-reverse', files.heldout, 'generate', 'held_out'),
      ds('first-letter', files.first, 'generate', null, { answerRegex: FIRST_LETTER }),
      ds('first-letter-whole', files.first, 'generate', null),
      ds('first-letter-digits', files.first, 'generate', null, { answerRegex: '\\d+' }),
    ]);
    expect(r.datasets.map((d) => d.accuracy)).toEqual([1, 1, 0, 0]);
    expect(byName(r, 'copy-reverse').answers!.outputs[0]).toBe(' cat');
    expect(byName(r, 'copy-reverse').base!.accuracy).toBeLessThan(0.2);
    expect(r.deltaForgetting).toBe(1 - byName(r, 'copy-reverse').base!.accuracy);
    expect(r.deltaLearning).toBeNull();
  });
});

describe('CHOICE', () => {
  it('log-likelihoods and picks equal an independent float64 computation, for the model and the base', needs('torch'), async () => {
    const data = await lines<ChoiceLine>(files.choice);
    const answers = data.map((d) => (typeof d.answer === 'number' ? d.answer : d.choices.indexOf(d.answer)));
    const tokens = data.reduce((s, d, k) => s + tokenizer.encode(d.choices[answers[k]], { addSpecialTokens: false }).length, 0);
    for (const [model, pick] of [[tuned, (d: DatasetScore) => d], [base, (d: DatasetScore) => d.base!]] as const) {
      const want = (await reference(model)).logliks;
      const got = pick(byName(result, 'choice'));
      got.answers!.logLikelihoods!.forEach((ll, k) => ll.forEach((x, c) => close(x, want[k][c])));
      const picks = want.map((ll) => ll.indexOf(Math.max(...ll)));
      expect(got.answers!.outputs).toEqual(picks);
      expect(got.accuracy).toBe(picks.filter((p, k) => p === answers[k]).length / data.length);
      // loss: the correct choices' mean per-token cross-entropy.
      close(got.loss, -want.reduce((s, ll, k) => s + ll[answers[k]], 0) / tokens);
    }
    expect(byName(result, 'choice').tokens).toBe(tokens);
    expect(byName(result, 'choice').examples).toBe(data.length);
    expect(byName(result, 'choice').base!.accuracy).toBe(1);
    expect(byName(result, 'choice').accuracy).toBeLessThan(1);
  });
});

describe('drift figures', () => {
  it('on a LOSS and a CHOICE dataset equal torch_figures.py\'s, as the trainer\'s probes define them', needs('torch'), async () => {
    const vocab = Array.from({ length: tokenizer.vocabSize }, (_, id) => tokenizer.tokenText(id));
    const classes = {
      number: vocab.flatMap((t, id) => (isNumberToken(t) ? [id] : [])),
      vowel: vocab.flatMap((t, id) => (new RegExp(VOWEL.pattern, 'u').test(t) ? [id] : [])),
    };
    const heldout = (await loadDataset(files.heldout, tokenizer, { seqLen: SEQ })).examples;
    const choice = (await lines<ChoiceLine>(files.choice)).map((d) => {
      const p = tokenizer.encode(d.prompt, { addSpecialTokens: false });
      const c = tokenizer.encode(typeof d.answer === 'number' ? d.choices[d.answer] : d.answer, { addSpecialTokens: false });
      return { inputIds: [...p, ...c], labels: [...p.map(() => -100), ...c] };
    });
    for (const [name, examples] of [['copy-reverse-loss', heldout], ['choice', choice]] as const) {
      const ref = await python<TorchFigures>(TORCH_FIGURES, {
        base_dir: base,
        current_dir: tuned,
        examples: examples.map((e) => ({ input_ids: e.inputIds, targets: targetsOf(e) })),
        classes,
      });
      const d = byName(result, name);
      const f = d.base!.drift;
      expectTorchFigures(f, ref);
      expect(d.tokens).toBe(ref.positions);
      close(d.loss, ref.heldout_loss);
      close(d.base!.loss, ref.heldout_loss_base);
      close(d.tokenAccuracy, ref.token_accuracy);
      expect(ref.kl_to_base).toBeGreaterThan(0.5); // the figures mean something only if the model drifted
    }
    // LOSS datasets: accuracy is the token accuracy.
    const loss = byName(result, 'copy-reverse-loss');
    expect(loss.accuracy).toBe(loss.tokenAccuracy);
    expect(loss.base!.accuracy).toBe(loss.base!.tokenAccuracy);
  });
});

describe('summary', () => {
  it('Δ learning and Δ forgetting are the means of the TARGET and HELD_OUT accuracy deltas', () => {
    for (const d of result.datasets) {
      expect(d.base!.accuracyDelta).toBe(d.accuracy - d.base!.accuracy);
      expect(d.base!.lossDelta).toBe(d.loss - d.base!.loss);
    }
    const delta = (name: string) => byName(result, name).base!.accuracyDelta;
    expect(result.targetDatasets).toBe(1);
    expect(result.heldOutDatasets).toBe(2);
    expect(result.deltaLearning).toBe(delta('counting'));
    expect(result.deltaForgetting).toBeCloseTo((delta('copy-reverse') + delta('choice')) / 2, 12);
    expect(result.deltaLearning!).toBeGreaterThan(0);
    expect(result.deltaForgetting!).toBeLessThan(0);
  });

  it('without a base: no comparison and no summary', async () => {
    const r = await run(tuned, null, [ds('counting', files.counting, 'generate', 'target', { maxNewTokens: 4 })]);
    expect(r.datasets[0].base).toBeNull();
    expect(r.datasets[0].accuracy).toBe(byName(result, 'counting').accuracy);
    expect(r).toMatchObject({ deltaLearning: null, deltaForgetting: null, targetDatasets: 0, heldOutDatasets: 0 });
  });
});

describe('base parameters', () => {
  it('tensors byte-identical to the model\'s are shared, so the graph stores them once', async () => {
    const gateUp = join(dir, 'gate-up');
    await tune({ ...DEFAULTS, model: base, data: files.counting, out: gateUp, policy: { preset: 'mlp_gate_up' }, lr: 1e-3, steps: 2, batchSize: 8, seqLen: SEQ, warmupSteps: 0 });
    const [model, baseCkpt] = await Promise.all([loadCheckpoint(gateUp), loadCheckpoint(base)]);
    const current = paramsOf(model);
    const shared = baseParamsOf(baseCkpt, model, current);
    const own = [...shared.keys()].filter((n) => shared.get(n) !== current.get(n));
    expect(own).toEqual([...current.keys()].filter((n) => /mlp\.(gate|up)_proj/.test(n)));
  });

  it('a model compared with itself: zero deltas, zero KL, full agreement', async () => {
    const r = await run(base, base, [ds('choice', files.choice, 'choice', 'held_out'), ds('copy-reverse', files.heldout, 'generate', 'target')]);
    for (const d of r.datasets) {
      expect(d.base).toMatchObject({ lossDelta: 0, accuracyDelta: 0 });
      expect(d.base!.drift.top1Agreement).toBe(1);
      expect(Math.abs(d.base!.drift.klToBase)).toBeLessThan(1e-6);
    }
    expect(r).toMatchObject({ deltaLearning: 0, deltaForgetting: 0 });
  });
});

describe('over gRPC', () => {
  it('bad fields get INVALID_ARGUMENT with every violation; a good request maps every figure', async () => {
    const server = await startServer({ port: 0, dataDir: join(dir, 'srv'), modelRoots: [dir], dataRoots: [dir] });
    const client = connect(server.port);
    const path = (value: string) => ({ source: { $case: 'path' as const, value } });
    try {
      const bad = await failure(
        client.evaluate(
          EvaluateRequest.fromPartial({
            model: path(tuned),
            datasets: [
              { path: files.choice, kind: 9 as EvalDataset_Kind },
              { path: files.heldout, kind: EvalDataset_Kind.GENERATE, answerRegex: '(', maxNewTokens: 0 },
              { path: files.heldout, kind: EvalDataset_Kind.LOSS, role: 7 as EvalDataset_Role, answerRegex: 'x' },
            ],
            tokenClasses: [VOWEL],
          }),
        ),
      );
      expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(bad.violations.map((v) => v.field).sort()).toEqual([
        'datasets[0].kind',
        'datasets[1].answer_regex',
        'datasets[1].max_new_tokens',
        'datasets[2].answer_regex',
        'datasets[2].role',
        'token_classes',
      ]);
      expect(bad.violations.find((v) => v.field === 'datasets[1].answer_regex')!.description).toMatch(/not a valid RE2 regular expression/);

      const otherArch = await tinyModel(dir, TINY_LLAMA, 'llama');
      const arch = await failure(client.evaluate(EvaluateRequest.fromPartial({ model: path(tuned), baseModel: path(otherArch), datasets: [{ path: files.heldout }] })));
      expect(arch.violations).toEqual([{ field: 'base_model.path', description: expect.stringMatching(/^has arch "llama" but the model has "qwen2"/) }]);

      // Data files are parsed in the worker; a bad line still comes back as a field violation with its line,
      // the file named relative to the data root (where the server keeps files is not the caller's business).
      const broken = join(dir, 'broken-choice.jsonl');
      await writeFile(broken, '{"prompt": "a", "choices": [" b", " c"], "answer": 0}\n{"prompt": "a", "choices": [" b"], "answer": 0}\n');
      const data = await failure(client.evaluate(EvaluateRequest.fromPartial({ model: path(tuned), datasets: [{ path: broken, kind: EvalDataset_Kind.CHOICE }] })));
      expect(data.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(data.violations).toEqual([{ field: 'datasets[0].path', description: 'broken-choice.jsonl:2: "choices" needs at least 2 entries, got 1' }]);

      const ok = await client.evaluate(
        EvaluateRequest.fromPartial({
          model: path(tuned),
          baseModel: path(base),
          batchSize: 5,
          seqLen: SEQ,
          tokenClasses: [VOWEL],
          datasets: [
            { name: 'counting', path: files.counting, kind: EvalDataset_Kind.GENERATE, role: EvalDataset_Role.TARGET, maxNewTokens: 4 },
            { name: 'choice', path: files.choice, kind: EvalDataset_Kind.CHOICE, role: EvalDataset_Role.HELD_OUT },
          ],
        }),
      );
      for (const r of ok.results) {
        const want = byName(result, r.name);
        expect(r).toMatchObject({ examples: want.examples, tokens: want.tokens, accuracy: want.accuracy, kind: EvalDataset_Kind[want.kind.toUpperCase() as 'LOSS'] });
        expect(r.base!.accuracy).toBe(want.base!.accuracy);
        expect(r.base!.accuracyDelta).toBe(want.base!.accuracyDelta);
        close(r.loss, want.loss);
        close(r.base!.loss, want.base!.loss);
        close(r.base!.drift!.klToBase, want.base!.drift.klToBase);
        close(r.base!.drift!.classes[0].mass, want.base!.drift.classes[0].mass);
      }
      expect(ok.results.map((r) => r.role)).toEqual([EvalDataset_Role.TARGET, EvalDataset_Role.HELD_OUT]);
      expect(ok).toMatchObject({ deltaLearning: result.deltaLearning, deltaForgetting: byName(result, 'choice').base!.accuracyDelta, targetDatasets: 1, heldOutDatasets: 1 });
    } finally {
      client.close();
      await server.shutdown();
    }
  });
});
