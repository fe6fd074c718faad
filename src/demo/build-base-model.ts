// Rebuilds the demo's base model into demo/base-model/ (or --out DIR), reproducibly from its seed:
//   npx tsx src/demo/build-base-model.ts [--out DIR] [--seed N] [--steps N]
// `narrowtune demo --rebuild-base` does the same.
import { parseArgs } from 'node:util';
import { BASE_DEFAULTS, buildBaseModel, DEMO_BASE_MODEL_DIR } from './base-model.js';

const PROGRESS_EVERY = 250;

function int(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got "${v}"`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { out: { type: 'string' }, seed: { type: 'string' }, steps: { type: 'string' } },
    strict: true,
  });
  const out = values.out ?? DEMO_BASE_MODEL_DIR;
  const seed = int('seed', values.seed, BASE_DEFAULTS.seed);
  const steps = int('steps', values.steps, BASE_DEFAULTS.steps);
  console.log(`building the demo base model into ${out} (seed ${seed}, ${steps} steps)`);
  const r = await buildBaseModel(out, {
    seed,
    steps,
    onEvent: (e) => {
      if (e.type === 'started') console.log(`${e.examples} examples, ${e.trainableParameters.toLocaleString('en-US')} trainable parameters, seq ${e.seq}`);
      if (e.type === 'step' && (e.step % PROGRESS_EVERY === 0 || e.step === e.totalSteps)) {
        console.log(`step ${e.step}/${e.totalSteps} loss ${e.loss.toFixed(4)} lr ${e.learningRate.toExponential(2)} ${e.elapsedSeconds.toFixed(0)}s`);
      }
      if (e.type === 'eval') console.log(`${e.kind.padEnd(7)} ${e.skill.padEnd(8)} ${(100 * e.accuracy).toFixed(0)}%`);
    },
  });
  console.log(`done in ${r.totalSeconds.toFixed(0)}s (training ${r.trainSeconds.toFixed(0)}s): ${r.out}`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
