// What the demo runs: the policies it compares, the size of a quick and a full run, and where the shipped base
// model lives. Apart from demo.ts so that `narrowtune demo --help` shows them without loading the service.
import { fileURLToPath } from 'node:url';

export const DEMO_POLICIES = ['full', 'mlp', 'mlp_gate_up', 'sa_proj'] as const;

/** Sizes and hyper-parameters of a run; `quick` fits in about two minutes on two cores. */
export const DEMO_PLANS = {
  quick: { trainExamples: 512, evalExamples: 24, probeExamples: 6, steps: 60, batchSize: 16, lr: 1e-3, probeEvery: 30 },
  full: { trainExamples: 2048, evalExamples: 64, probeExamples: 12, steps: 300, batchSize: 16, lr: 1e-3, probeEvery: 50 },
} as const;

/**
 * Absolute path of the shipped base model: <repository>/demo/base-model. This module sits two levels below the
 * root both as source (src/demo/) and compiled (dist/demo/, tsconfig.build.json's rootDir is src).
 */
export const DEMO_BASE_MODEL_DIR = fileURLToPath(new URL('../../demo/base-model', import.meta.url));
