// What the demo runs: the methods it compares, the size of a quick and a full run, and where the shipped base
// model lives. Apart from demo.ts so that `narrowtune demo --help` shows them without loading the service.
import { fileURLToPath } from 'node:url';
import { DEMO_METHOD_NAMES } from './methods.js';

export { DEMO_METHOD_NAMES };

export interface DemoPlan {
  /** The target skills learned in sequence, by name; null: every target skill, in the world's order. */
  targets: readonly string[] | null;
  /** How many of those are learned (the first ones); null: all of them. */
  stages: number | null;
  trainExamples: number;
  evalExamples: number;
  probeExamples: number;
  /** AdamW steps per stage. */
  steps: number;
  batchSize: number;
  /** The learning-rate sweep: every method runs once at each. */
  lrs: readonly number[];
  probeEvery: number;
}

/**
 * `quick` learns classify at three learning rates: 8 methods × 3 one-stage runs, about three minutes on two cores.
 * Counting would show number-mass drift, but the base learns it too slowly for that budget (docs/demo.md). `full`
 * learns every target skill in sequence at three learning rates: 8 × 3 runs of five stages.
 */
export const DEMO_PLANS: Readonly<Record<'quick' | 'full', DemoPlan>> = {
  quick: { targets: ['classify'], stages: null, trainExamples: 512, evalExamples: 16, probeExamples: 6, steps: 30, batchSize: 16, lrs: [3e-4, 1e-3, 3e-3], probeEvery: 20 },
  full: { targets: null, stages: null, trainExamples: 2048, evalExamples: 32, probeExamples: 12, steps: 100, batchSize: 16, lrs: [1e-4, 3e-4, 1e-3], probeEvery: 25 },
};

/**
 * Absolute path of the shipped base model: <repository>/demo/base-model. This module sits two levels below the
 * root both as source (src/demo/) and compiled (dist/demo/, tsconfig.build.json's rootDir is src).
 */
export const DEMO_BASE_MODEL_DIR = fileURLToPath(new URL('../../demo/base-model', import.meta.url));
