// Scores a model on datasets of three kinds, optionally against a base model:
//   LOSS      teacher-forced cross-entropy and next-token accuracy over label tokens (any trainer form);
//   GENERATE  batched greedy KV-cache decoding, exact match of the (regex-extracted) trimmed output;
//   CHOICE    the choice with the highest summed log-probability given the prompt.
// Every kind also gets the teacher-forced figures (loss, token accuracy) and, with a base model, the base's
// figures, the deltas and the drift figures of the trainer's probes, from one score graph holding both
// parameter sets. The paper's summary follows: Δ learning / Δ forgetting = mean accuracy change over the
// TARGET / HELD_OUT datasets.
// On a LLaVA-style model, GENERATE and CHOICE lines may carry images (eval-data.ts); each distinct image runs the
// vision tower once (image-features.ts's cache) and its features are the input embeddings at its positions, in the
// score graph and the generator's prefill. Text datasets run through the decoder alone.
import { padLength } from '../data/batches.js';
import { loadDataset, type Example } from '../data/dataset.js';
import { loadTokenizer, type TextTokenizer } from '../data/tokenizer.js';
import { paramsOf, paramTensor, type ParamTensor } from '../graph/params.js';
import type { Checkpoint } from '../model/checkpoint.js';
import type { ModelConfig } from '../model/config.js';
import { partOf } from '../model/llava-names.js';
import { loadModel } from '../model/load-model.js';
import type { Device } from '../runtime/session.js';
import { type FieldViolation, invalidArgument, NarrowtuneError } from '../util/errors.js';
import { compileUserRegex, MAX_USER_REGEX_CHARS, type UserRegex } from '../util/user-regex.js';
import { choiceExample, loadChoiceData, loadGenerateSet, type ChoiceItem, type EvalImages, type GenerateItem } from './eval-data.js';
import type { EvalImageOptions } from './eval-images.js';
import { datasetImageFeatures, ImageFeatureCache, imageTokens, readPreprocessing, visionWeightsHash, type ImageFeatureTable } from './image-features.js';
import { Generator, stopIdsOf } from './generate.js';
import { driftFigures, Scorer, type DriftFigures, type ScoreSums } from './scorer.js';
import { compileTokenClasses, type CompiledTokenClasses, type UserTokenClass } from './token-classes.js';

export type EvalKind = 'loss' | 'generate' | 'choice';
export type EvalRole = 'target' | 'held_out' | null;

export interface EvalDatasetOptions {
  name: string;
  path: string;
  kind: EvalKind;
  role: EvalRole;
  /** GENERATE: most tokens generated per prompt. */
  maxNewTokens: number;
  /** GENERATE: RE2 regular expression extracting the answer from the output; '' for the whole output. */
  answerRegex: string;
}

export interface EvaluateOptions {
  model: string;
  /** Model to compare against: same architecture and vocabulary. */
  base?: string | null;
  datasets: EvalDatasetOptions[];
  /** User token classes for the drift figures (needs a base). */
  tokenClasses?: UserTokenClass[];
  batchSize: number;
  seqLen: number;
  device: Device;
  /** Directories images may also lie in besides each data file's own (the service's data roots). */
  roots?: readonly string[];
  /** Directory of the on-disk image-feature cache (image-features.ts); absent: memory only. A host setting. */
  featureCache?: string | null;
  /** onnxruntime intra-op threads; absent or null: its own pool. A host setting. */
  threads?: number | null;
}

/** What one model answered on a GENERATE or CHOICE dataset, per example. */
export interface Answers {
  /** GENERATE: the decoded greedy output; CHOICE: the index of the picked choice. */
  outputs: (string | number)[];
  correct: boolean[];
  /** CHOICE: each choice's summed log-probability given the prompt (nats). */
  logLikelihoods?: number[][];
}

export interface ModelFigures {
  /** Mean cross-entropy over the teacher-forced label tokens, nats. */
  loss: number;
  tokenAccuracy: number;
  /** LOSS: tokenAccuracy; GENERATE: exact-match rate; CHOICE: pick accuracy. */
  accuracy: number;
  answers?: Answers;
}

export interface DatasetScore extends ModelFigures {
  name: string;
  kind: EvalKind;
  role: EvalRole;
  /** Teacher-forced label tokens scored. */
  tokens: number;
  examples: number;
  base: (ModelFigures & { lossDelta: number; accuracyDelta: number; drift: DriftFigures }) | null;
}

export interface EvaluateResult {
  datasets: DatasetScore[];
  /** With images: distinct image files over all datasets, and how many ran the vision tower (identical bytes once). */
  images?: { files: number; visionRuns: number };
  /** Mean accuracyDelta over TARGET datasets; null without a base or without targets. */
  deltaLearning: number | null;
  /** Mean accuracyDelta over HELD_OUT datasets; null without a base or without held-out datasets. */
  deltaForgetting: number | null;
  targetDatasets: number;
  heldOutDatasets: number;
}

export const EVAL_DEFAULTS = { batchSize: 8, seqLen: 1024, device: 'cpu' as Device, maxNewTokens: 32 };
export const MAX_NEW_TOKENS = 1024;
export const MAX_ANSWER_REGEX_CHARS = MAX_USER_REGEX_CHARS;

/** Compiles an answer_regex (RE2 syntax, user-regex.ts); throws a field violation on `field`. */
export function compileAnswerRegex(source: string, field: string): UserRegex | null {
  if (source === '') return null;
  return compileUserRegex(source, field, MAX_ANSWER_REGEX_CHARS);
}

/**
 * The answer in a generated text: with a regex, its first capture group if it has groups (an unmatched group is
 * ''), else the whole match, or null when it does not match; without, the whole text. Trimmed.
 */
export function extractAnswer(text: string, regex: UserRegex | null): string | null {
  if (!regex) return text.trim();
  const m = regex.exec(text);
  if (!m) return null;
  return (m.length > 1 ? (m[1] ?? '') : (m[0] ?? '')).trim();
}

/** Why `base` cannot be compared with `model` in one graph (null when it can): every config field must agree. */
export function architectureDifference(model: ModelConfig, base: ModelConfig): string | null {
  const { raw: _a, ...a } = model;
  const { raw: _b, ...b } = base;
  for (const key of Object.keys(a) as (keyof typeof a)[]) {
    const x = JSON.stringify(a[key]);
    const y = JSON.stringify(b[key]);
    if (x !== y) return `has ${key} ${y} but the model has ${x}; the base must have the model's architecture and vocabulary`;
  }
  return null;
}

/** Δ learning and Δ forgetting: the mean accuracy change over the TARGET and the HELD_OUT datasets (needs a base). */
export function summarize(datasets: readonly Pick<DatasetScore, 'role' | 'base'>[]): Omit<EvaluateResult, 'datasets'> {
  const mean = (role: Exclude<EvalRole, null>) => {
    const deltas = datasets.filter((d) => d.role === role && d.base).map((d) => d.base!.accuracyDelta);
    return { value: deltas.length ? deltas.reduce((s, x) => s + x, 0) / deltas.length : null, count: deltas.length };
  };
  const learning = mean('target');
  const forgetting = mean('held_out');
  return { deltaLearning: learning.value, deltaForgetting: forgetting.value, targetDatasets: learning.count, heldOutDatasets: forgetting.count };
}

type LoadedSet =
  | { kind: 'loss'; examples: Example[] }
  | ({ kind: 'generate'; examples: Example[]; items: GenerateItem[]; regex: UserRegex | null } & EvalImages)
  | ({ kind: 'choice'; items: ChoiceItem[]; correct: Example[]; others: Example[]; otherIndex: [item: number, choice: number][] } & EvalImages);

/** Runs `fn`, adding an invalid_argument error's violations to `into` instead of throwing. */
async function collect<T>(into: FieldViolation[], fn: () => T | Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (e) {
    if (!(e instanceof NarrowtuneError) || e.kind !== 'invalid_argument') throw e;
    into.push(...(e.violations.length ? e.violations : [{ field: 'datasets', description: e.message }]));
    return undefined;
  }
}

async function loadSet(d: EvalDatasetOptions, i: number, tokenizer: TextTokenizer, config: ModelConfig, o: EvaluateOptions, images: EvalImageOptions | null): Promise<LoadedSet> {
  const field = `datasets[${i}].path`;
  switch (d.kind) {
    case 'loss':
      return { kind: 'loss', examples: (await loadDataset(d.path, tokenizer, { seqLen: o.seqLen, field })).examples };
    case 'generate': {
      const regex = compileAnswerRegex(d.answerRegex, `datasets[${i}].answer_regex`);
      if (!Number.isInteger(d.maxNewTokens) || d.maxNewTokens < 1 || d.maxNewTokens > MAX_NEW_TOKENS) {
        throw invalidArgument(`datasets[${i}].max_new_tokens`, `must be in [1, ${MAX_NEW_TOKENS}], got ${d.maxNewTokens}`);
      }
      const set = await loadGenerateSet(d.path, tokenizer, { seqLen: o.seqLen, field, images });
      const longest = Math.max(...set.items.map((it) => it.promptIds.length));
      if (longest + d.maxNewTokens > config.maxPositionEmbeddings) {
        throw invalidArgument(
          `datasets[${i}].max_new_tokens`,
          `the longest prompt (${longest} tokens) + ${d.maxNewTokens} new tokens exceeds the model's max_position_embeddings ${config.maxPositionEmbeddings}`,
        );
      }
      return { kind: 'generate', examples: set.examples, items: set.items, regex, images: set.images, imageLines: set.imageLines };
    }
    case 'choice': {
      const { items, ...setImages } = await loadChoiceData(d.path, tokenizer, { seqLen: o.seqLen, field, images });
      const others: Example[] = [];
      const otherIndex: [number, number][] = [];
      items.forEach((it, k) =>
        it.choiceIds.forEach((_, c) => {
          if (c === it.answer) return;
          others.push(choiceExample(it, c));
          otherIndex.push([k, c]);
        }),
      );
      return { kind: 'choice', items, correct: items.map((it) => choiceExample(it, it.answer)), others, otherIndex, ...setImages };
    }
  }
}

/**
 * The base's parameters, reusing the model's ParamTensor wherever the stored tensors are byte-identical: the score
 * graph stores a shared object once, so a base that differs in a few tensors costs only those.
 */
export function baseParamsOf(base: Checkpoint, model: Checkpoint, current: ReadonlyMap<string, ParamTensor>): Map<string, ParamTensor> {
  return new Map([...current.keys()].map((n) => {
    const b = base.tensors.get(n)!;
    const m = model.tensors.get(n)!;
    const same = b.dtype === m.dtype && Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength).equals(m.data);
    return [n, same ? current.get(n)! : paramTensor(b)];
  }));
}

/**
 * Greedy outputs of `items`' prompts, decoded without special tokens; one compiled generator, batches of batchSize.
 * `features` ([tokens, hidden] by ExampleImage.image) fill the prompts' image positions.
 */
async function generateAll(ckpt: Checkpoint, tokenizer: TextTokenizer, items: GenerateItem[], maxNewTokens: number, o: EvaluateOptions, features?: ImageFeatureTable): Promise<string[]> {
  const B = Math.min(o.batchSize, items.length);
  const P = Math.max(...items.map((it) => it.promptIds.length));
  const stopIds = await stopIdsOf(ckpt.dir, ckpt.dir === o.model ? tokenizer : undefined);
  const generator = await Generator.create(ckpt, B, P, maxNewTokens, o.device, { stopIds, image: features !== undefined, ...threadsOf(o) });
  try {
    const texts: string[] = [];
    for (let i = 0; i < items.length; i += B) {
      const batch = items.slice(i, i + B);
      const images = features && { rows: batch.map((it) => it.images), features };
      const ids = await generator.generateIds(batch.map((it) => it.promptIds), images);
      texts.push(...ids.map((row) => tokenizer.decode(row, { skipSpecialTokens: true })));
    }
    return texts;
  } finally {
    await generator.release();
  }
}

function generateAnswers(texts: string[], items: GenerateItem[], regex: UserRegex | null): Answers {
  return { outputs: texts, correct: texts.map((t, k) => extractAnswer(t, regex) === items[k].answer) };
}

/** Picks from −row losses: loglik[k][c] = −Σ CE over choice c's tokens; the first maximum wins. */
function choiceAnswers(set: Extract<LoadedSet, { kind: 'choice' }>, correctRows: number[], otherRows: number[]): Answers {
  const logLikelihoods = set.items.map((it) => new Array<number>(it.choiceIds.length).fill(NaN));
  set.items.forEach((it, k) => (logLikelihoods[k][it.answer] = -correctRows[k]));
  set.otherIndex.forEach(([k, c], r) => (logLikelihoods[k][c] = -otherRows[r]));
  const outputs = logLikelihoods.map((ll) => ll.reduce((best, x, c) => (x > ll[best] ? c : best), 0));
  return { outputs, correct: outputs.map((c, k) => c === set.items[k].answer), logLikelihoods };
}

const rate = (flags: boolean[]) => flags.filter(Boolean).length / Math.max(1, flags.length);

function figures(lossSum: number, correct: number, positions: number, answers: Answers | undefined): ModelFigures {
  const n = Math.max(1, positions);
  const tokenAccuracy = correct / n;
  return { loss: lossSum / n, tokenAccuracy, accuracy: answers ? rate(answers.correct) : tokenAccuracy, ...(answers ? { answers } : {}) };
}

/**
 * Memory: the score graph holds the model's parameters and, with a base, the base's tensors that differ from them,
 * all in float32 (ORT keeps its own copy of the initializers), besides the loaded checkpoints. GENERATE datasets
 * compile a prefill and a decode graph per model and dataset, one model at a time, released before scoring.
 */
export async function evaluate(o: EvaluateOptions): Promise<EvaluateResult> {
  if (o.datasets.length === 0) throw invalidArgument('datasets', 'at least one dataset is required');
  const tokenizer = await loadTokenizer(o.model);
  const ckpt = await loadModel(o.model);
  const baseCkpt = o.base ? await loadModel(o.base) : null;
  const llava = ckpt.llava?.config ?? null;
  const imageOptions: EvalImageOptions | null = llava && {
    // LLaVA-NeXT's placeholder (-200) is no token: its positions hold the pad id, which the image mask hides.
    imageTokenId: llava.imageTokenIndex >= 0 ? llava.imageTokenIndex : tokenizer.padId,
    tokensFor: (ref) => imageTokens(llava, ref.height, ref.width),
    roots: o.roots,
  };
  const violations: FieldViolation[] = [];
  if (baseCkpt) {
    const diff = architectureDifference(ckpt.config, baseCkpt.config);
    if (diff) violations.push({ field: 'base_model', description: diff });
  } else if (o.tokenClasses?.length) {
    violations.push({ field: 'token_classes', description: 'token classes are reported in the drift figures, which need base_model' });
  }
  const classes: CompiledTokenClasses | undefined = baseCkpt
    ? await collect(violations, () => compileTokenClasses(tokenizer, ckpt.config.vocabSize, o.tokenClasses ?? []))
    : undefined;
  // Every dataset is read and checked before anything is compiled, and every problem is reported at once.
  const sets: (LoadedSet | undefined)[] = [];
  for (const [i, d] of o.datasets.entries()) sets.push(await collect(violations, () => loadSet(d, i, tokenizer, ckpt.config, o, imageOptions)));
  const withImages = sets.some((s) => s !== undefined && s.kind !== 'loss' && s.images.length > 0);
  if (withImages && baseCkpt && !(baseCkpt.llava && visionWeightsHash(baseCkpt.tensors) === visionWeightsHash(ckpt.tensors))) {
    // One image's features serve both models: tuning never changes the tower or projector.
    violations.push({ field: 'base_model', description: "the datasets have images, so the base must have the model's vision tower, projector and image_newline, byte for byte" });
  }
  if (violations.length > 0) {
    throw new NarrowtuneError('invalid_argument', violations.map((v) => `${v.field}: ${v.description}`).join('\n'), violations);
  }
  const loaded = sets as LoadedSet[];
  const { features, images } = withImages ? await imageFeaturesOf(ckpt, loaded, o) : { features: new Map<number, ImageFeatureTable>(), images: undefined };

  // GENERATE: greedy outputs of each model, one dataset at a time (each has its own prompt length and budget).
  const generated = new Map<number, { model: Answers; base?: Answers }>();
  for (const [i, s] of loaded.entries()) {
    if (s.kind !== 'generate') continue;
    const M = o.datasets[i].maxNewTokens;
    const f = features.get(i);
    const model = generateAnswers(await generateAll(ckpt, tokenizer, s.items, M, o, f), s.items, s.regex);
    const base = baseCkpt ? generateAnswers(await generateAll(baseCkpt, tokenizer, s.items, M, o, f), s.items, s.regex) : undefined;
    generated.set(i, { model, base });
  }

  // Teacher-forced scoring: one graph (both parameter sets with a base) sized for the longest example of any dataset.
  const params = paramsOf(ckpt);
  const baseParams = baseCkpt ? baseParamsOf(baseCkpt, ckpt, params) : undefined;
  const all = loaded.flatMap((s) => (s.kind === 'choice' ? [...s.correct, ...s.others] : s.examples));
  const scorer = await Scorer.create(
    {
      config: ckpt.config,
      current: { params },
      base: baseParams ? { params: baseParams } : undefined,
      classes: classes ? { matrix: classes.matrix, count: classes.names.length } : undefined,
      batch: o.batchSize,
      seq: padLength(all, o.seqLen),
      rowLoss: loaded.some((s) => s.kind === 'choice'),
      image: withImages,
    },
    o.device,
    threadsOf(o),
  );
  try {
    const datasets: DatasetScore[] = [];
    for (const [i, s] of loaded.entries()) {
      const d = o.datasets[i];
      let sums: ScoreSums;
      let answers: Answers | undefined;
      let baseAnswers: Answers | undefined;
      if (s.kind === 'choice') {
        // The correct rows alone make up the teacher-forced sums; the other rows only add their row losses.
        sums = await scorer.score(s.correct, tokenizer.padId, undefined, features.get(i));
        const others = await scorer.score(s.others, tokenizer.padId, undefined, features.get(i));
        answers = choiceAnswers(s, sums.rowLoss!, others.rowLoss!);
        if (baseCkpt) baseAnswers = choiceAnswers(s, sums.base!.rowLoss!, others.base!.rowLoss!);
      } else {
        sums = await scorer.score(s.examples, tokenizer.padId, undefined, features.get(i));
        answers = generated.get(i)?.model;
        baseAnswers = generated.get(i)?.base;
      }
      const model = figures(sums.lossSum, sums.correct, sums.positions, answers);
      let base: DatasetScore['base'] = null;
      if (baseCkpt) {
        const b = figures(sums.base!.lossSum, sums.base!.correct, sums.positions, baseAnswers);
        base = { ...b, lossDelta: model.loss - b.loss, accuracyDelta: model.accuracy - b.accuracy, drift: driftFigures(sums, classes!.names) };
      }
      const examples = s.kind === 'loss' ? s.examples.length : s.items.length;
      datasets.push({ name: d.name, kind: d.kind, role: d.role, ...model, tokens: sums.positions, examples, base });
    }
    return { datasets, ...summarize(datasets), ...(images ? { images } : {}) };
  } finally {
    await scorer.release();
  }
}

const threadsOf = (o: EvaluateOptions) => (o.threads ? { intraOpThreads: o.threads } : {});

/**
 * Each image dataset's features by dataset index, through one cache: an image (by its bytes) runs the tower once,
 * whichever datasets use it. A missing or undecodable image fails with its path and the line that first uses it.
 */
async function imageFeaturesOf(ckpt: Checkpoint, sets: LoadedSet[], o: EvaluateOptions): Promise<{ features: Map<number, ImageFeatureTable>; images: { files: number; visionRuns: number } }> {
  const llava = ckpt.llava!.config;
  const cache = new ImageFeatureCache({
    llava,
    vision: new Map([...ckpt.tensors].filter(([n]) => partOf(n) !== 'language').map(([n, t]) => [n, paramTensor(t)])),
    weightsHash: visionWeightsHash(ckpt.tensors),
    pre: await readPreprocessing(ckpt.dir, llava),
    device: o.device,
    precision: 'float32',
    threads: o.threads ?? null,
    dir: o.featureCache ?? null,
  });
  const features = new Map<number, ImageFeatureTable>();
  try {
    for (const [i, s] of sets.entries()) {
      if (s.kind === 'loss' || s.images.length === 0) continue;
      const examples = s.kind === 'choice' ? s.correct : s.examples;
      const source = { name: o.datasets[i].path, field: `datasets[${i}].path` };
      features.set(i, await datasetImageFeatures({ images: s.images, imageLines: s.imageLines, examples, source }, cache, ckpt.config.hiddenSize));
    }
  } finally {
    await cache.release();
  }
  return { features, images: { files: cache.keys.size, visionRuns: cache.computed } };
}
