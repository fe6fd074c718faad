// The demo's base model: a small Qwen2-architecture model with narrowtune's own byte-level tokenizer, pretrained
// from random init with narrowtune's trainer (every tensor trainable) on the held-out skills plus general text.
// It knows the held-out skills and none of the targets; the demo then fine-tunes it on a target under different
// policies and measures learning (target accuracy) against forgetting (held-out accuracy, number-mass drift).
//
// The shipped copy lives in demo/base-model/ with BUILD.md; `narrowtune demo --rebuild-base` (or
// `npx tsx src/demo/build-base-model.ts`) rebuilds it bit for bit from the seed.

import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { generate } from '../eval/generate.js';
import { WEIGHTS_FILE } from '../model/checkpoint.js';
import { initModel, type InitModelOptions } from '../model/init-model.js';
import { DEFAULTS, type TuneOptions } from '../trainer/options.js';
import type { TrainEvent } from '../trainer/events.js';
import { tune } from '../trainer/trainer.js';
import { DEMO_BASE_MODEL_DIR } from './demo-plans.js';
import { generalTextData, heldoutSkills, skillData, targetSkills, type Skill, type SkillExample } from './skills.js';

export { DEMO_BASE_MODEL_DIR };

/**
 * Architecture of the base model: 3,282,688 parameters, 13 MB in F32, pretrained in about 20 minutes on 2 CPU cores.
 * F32 on purpose: the demo fine-tunes with small learning rates, and F16 storage would round small updates away.
 */
export const BASE_ARCH: Omit<InitModelOptions, 'out' | 'seed'> = {
  arch: 'qwen2',
  hidden: 256,
  layers: 4,
  heads: 4,
  kvHeads: 2,
  intermediate: 768,
  dtype: 'F32',
};

export const BASE_DEFAULTS = {
  seed: 7,
  steps: 3000,
  batchSize: 32,
  /** 3e-3 (right for hidden 64) stalled this width at a loss of ~1.7; 1e-3 reaches 0.04. */
  lr: 1e-3,
  /** Training examples per held-out skill, and general-text examples (steps cycle through them). */
  examplesPerSkill: 4000,
  generalExamples: 8000,
} as const;

/** Examples per held-out / target skill scored after the build (eval split). */
export const BUILD_EVAL_EXAMPLES = 100;
/** Greedy generation budget: the longest answer is 9 bytes plus EOS. */
export const MAX_ANSWER_TOKENS = 10;

export interface BuildBaseModelOptions {
  seed?: number;
  steps?: number;
  /** Training progress (the trainer's events) and the evaluation that follows. */
  onEvent?: (e: TrainEvent | { type: 'eval'; skill: string; kind: Skill['kind']; accuracy: number }) => void;
  /** Skip writing BUILD.md (tests building a throw-away model). */
  writeBuildNotes?: boolean;
  /** Evaluation examples per skill (default BUILD_EVAL_EXAMPLES); 0 skips the evaluation. */
  evalExamples?: number;
  /** Overrides of BASE_ARCH and of the mix's size (tests build a tiny throw-away model). */
  arch?: Partial<typeof BASE_ARCH>;
  examplesPerSkill?: number;
  generalExamples?: number;
}

export interface SkillAccuracy {
  skill: string;
  kind: Skill['kind'];
  accuracy: number;
  examples: number;
}

export interface BuildBaseModelResult {
  out: string;
  arch: typeof BASE_ARCH;
  seed: number;
  steps: number;
  trainSeconds: number;
  totalSeconds: number;
  finalLoss: number;
  parameters: number;
  accuracies: SkillAccuracy[];
  /** Where it ran: CPU count and model, and the 1-minute load average when training ended (shared machines). */
  machine: { cpus: number; cpuModel: string; loadAverage: number };
  /** SHA-256 of model.safetensors: equal across rebuilds with the same seed and steps. */
  weightsSha256: string;
  weightsBytes: number;
}

/** The pretraining mix: held-out skills' train splits and general text, interleaved deterministically. */
export function pretrainingData(seed: number, perSkill: number = BASE_DEFAULTS.examplesPerSkill, general: number = BASE_DEFAULTS.generalExamples): SkillExample[] {
  return [...heldoutSkills.flatMap((s) => skillData(s, 'train', perSkill, seed)), ...generalTextData(general, seed)];
}

function jsonl(examples: readonly SkillExample[]): string {
  return examples.map((e) => JSON.stringify({ prompt: e.prompt, completion: e.completion })).join('\n') + '\n';
}

/** Exact-match accuracy of greedy answers on `examples` (answers compared with surrounding whitespace trimmed). */
export async function exactMatch(model: string, examples: readonly SkillExample[], batchSize = 64): Promise<number> {
  if (examples.length === 0) return NaN;
  const { texts } = await generate({ model, prompts: examples.map((e) => e.prompt), maxNewTokens: MAX_ANSWER_TOKENS, batchSize });
  let correct = 0;
  texts.forEach((t, i) => {
    if (t.trim() === examples[i].completion.trim()) correct++;
  });
  return correct / examples.length;
}

/** Accuracy on the eval split of every held-out and target skill. */
export async function measureSkills(model: string, n: number, seed: number): Promise<SkillAccuracy[]> {
  const out: SkillAccuracy[] = [];
  for (const skill of [...heldoutSkills, ...targetSkills]) {
    const examples = skillData(skill, 'eval', n, seed);
    out.push({ skill: skill.name, kind: skill.kind, accuracy: await exactMatch(model, examples), examples: examples.length });
  }
  return out;
}

/** The pretraining run's trainer options (all tensors trainable, AdamW, cosine with 3% warm-up). */
export function baseTuneOptions(model: string, data: string, out: string, seed: number, steps: number): TuneOptions {
  return {
    ...DEFAULTS,
    model,
    data,
    out,
    policy: { include: ['.'] },
    optimizer: 'adamw',
    lr: BASE_DEFAULTS.lr,
    weightDecay: 0.01,
    schedule: 'cosine',
    steps,
    batchSize: BASE_DEFAULTS.batchSize,
    seqLen: 64,
    clipNorm: 1,
    seed,
  };
}

/**
 * Builds the base model into `out` (written atomically by the trainer; `out` must be absent, empty or a previous
 * narrowtune output): random init, pretraining, then exact-match evaluation of every skill and BUILD.md.
 */
export async function buildBaseModel(out: string = DEMO_BASE_MODEL_DIR, opts: BuildBaseModelOptions = {}): Promise<BuildBaseModelResult> {
  const seed = opts.seed ?? BASE_DEFAULTS.seed;
  const steps = opts.steps ?? BASE_DEFAULTS.steps;
  const onEvent = opts.onEvent ?? (() => {});
  const target = resolve(out);
  const t0 = performance.now();
  // The generated inputs live beside the output, so the receipt names them the same way on every machine
  // (../base-model.inputs/init and …/pretrain.jsonl) and a rebuild differs from the shipped one only in created_at.
  const work = `${target}.inputs`;
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  try {
    const arch = { ...BASE_ARCH, ...opts.arch };
    const init = await initModel({ ...arch, seed, out: join(work, 'init') });
    const data = join(work, 'pretrain.jsonl');
    await writeFile(data, jsonl(pretrainingData(seed, opts.examplesPerSkill, opts.generalExamples)));
    const t1 = performance.now();
    let finalLoss = NaN;
    await tune(baseTuneOptions(init.dir, data, target, seed, steps), (e) => {
      if (e.type === 'done') finalLoss = e.finalLoss;
      onEvent(e);
    });
    const trainSeconds = (performance.now() - t1) / 1000;
    const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model.trim() ?? 'unknown', loadAverage: loadavg()[0] };
    const weights = await readFile(join(target, WEIGHTS_FILE));
    const weightsSha256 = createHash('sha256').update(weights).digest('hex');
    const n = opts.evalExamples ?? BUILD_EVAL_EXAMPLES;
    const accuracies = n > 0 ? await measureSkills(target, n, seed) : [];
    for (const a of accuracies) onEvent({ type: 'eval', skill: a.skill, kind: a.kind, accuracy: a.accuracy });
    const result: BuildBaseModelResult = {
      out: target,
      arch,
      seed,
      steps,
      trainSeconds,
      totalSeconds: (performance.now() - t0) / 1000,
      finalLoss,
      parameters: init.parameterCount,
      accuracies,
      machine,
      weightsSha256,
      weightsBytes: weights.length,
    };
    if (opts.writeBuildNotes ?? true) await writeFile(join(target, 'BUILD.md'), buildNotes(result));
    return result;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function pct(x: number): string {
  return `${(100 * x).toFixed(0)}%`;
}

/** BUILD.md: how the shipped model was made and how well it knows each skill. */
export function buildNotes(r: BuildBaseModelResult): string {
  const a = r.arch;
  const rows = r.accuracies.map((x) => `| ${x.skill} | ${x.kind} | ${pct(x.accuracy)} (${x.examples} eval examples) |`);
  return `# Demo base model

A ${a.arch} model (hidden ${a.hidden}, ${a.layers} layers, ${a.heads} heads, ${a.kvHeads} KV heads, MLP ${a.intermediate},
${r.parameters.toLocaleString('en-US')} parameters, ${a.dtype}) with narrowtune's built-in byte-level tokenizer (259 tokens:
256 bytes, \`<|endoftext|>\`, \`<|im_start|>\`, \`<|im_end|>\`), pretrained from random initialisation with narrowtune's own
trainer on the held-out skills of the demo's synthetic world (\`src/demo/world/\`, train split) mixed with general
text. Every tensor was trainable; AdamW, lr ${BASE_DEFAULTS.lr}, weight decay 0.01, cosine schedule with 3% warm-up, batch ${BASE_DEFAULTS.batchSize}.
\`narrowtune.json\` is the trainer's receipt of that run.

## Rebuild

\`\`\`sh
narrowtune demo --rebuild-base
# or, from a checkout:
npx tsx src/demo/build-base-model.ts
\`\`\`

Seed ${r.seed}, ${r.steps} optimizer steps (\`--seed\` and \`--steps\` change them). The weights are a pure function of the
seed and steps on a given CPU and onnxruntime build: a rebuild gives the same bytes, \`model.safetensors\` SHA-256
\`${r.weightsSha256}\`. Only \`created_at\` in \`narrowtune.json\` differs between builds; it names the generated
inputs relative to the model, in a working folder beside it (\`../${basename(r.out)}.inputs/\`) that the build removes.

Time: ${r.trainSeconds.toFixed(0)} s of training, ${r.totalSeconds.toFixed(0)} s in all (including the evaluation below), on
${r.machine.cpus} CPU cores (${r.machine.cpuModel}; 1-minute load average ${r.machine.loadAverage.toFixed(1)} when training ended,
where more than the core count means other work shared the CPUs). That is too slow to rebuild on every demo run, hence
this shipped copy (\`model.safetensors\` is ${(r.weightsBytes / 1e6).toFixed(1)} MB).
Final training loss ${r.finalLoss.toFixed(4)} (the mix includes general text, whose last words are partly random).

## Measured accuracy (greedy, exact match, eval split)

| skill | kind | accuracy |
| --- | --- | --- |
${rows.join('\n')}

Held-out skills should be near 100% and target skills near 0%: the targets are what the demo teaches.
`;
}
