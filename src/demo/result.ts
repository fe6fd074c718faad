// What one demo run measured, per method, learning rate and stage: the report renders it and the JSON file stores it.
// Learning, forgetting and drift are fractions (×100 for the paper's accuracy points).
import type { MatchedPoint } from './matched-learning.js';

export interface StageResult {
  stage: string;
  job: string;
  /** WiSE-FT: the merged model this stage ends with (the job's output is the tuned model before merging). */
  merged?: string;
  steps: number;
  events: number;
  finalLoss: number;
  /** The last probe of the job: drift on the held-out probe set against the model the stage started from. */
  probe: { numberMassDelta: number; klToBase: number } | null;
  /** Accuracy after this stage on the targets learned so far and on every held-out eval set. */
  accuracy: Record<string, number>;
  /** Mean held-out accuracy change from the base model (negative = forgotten). */
  deltaForgetting: number;
  /** Mean number_mass change from the base model on the held-out eval sets (bias drift). */
  numberMassDelta: number;
}

/** One method at one learning rate, through every stage. */
export interface RunResult {
  method: string;
  lr: number;
  stages: StageResult[];
  /** Mean over stages of (accuracy on the stage's target right after it − the base's accuracy on it). */
  deltaLearning: number;
  /** Mean over stages of the stage's held-out change. */
  deltaForgetting: number;
  /** Mean over stages of the stage's number_mass change. */
  numberMassDrift: number;
}

export interface MethodResult {
  method: string;
  about: string;
  /** The sweep, by increasing learning rate. */
  runs: RunResult[];
  /** The most learning of any run. */
  reach: number;
  /** The learning–forgetting curve read at the matched level; null where it never reaches it. */
  matched: MatchedPoint | null;
  /** The curve read at the common reach (the top of the range every method covers); null where it never gets there. */
  atReach: MatchedPoint | null;
}

/** A claim of the paper and whether this run reproduced it, in words computed from the numbers. */
export interface Finding {
  id: string;
  claim: string;
  verdict: 'reproduced' | 'not reproduced' | 'not measured';
  detail: string;
}

export interface DemoResult {
  mode: 'quick' | 'full';
  steps: number;
  lrs: number[];
  baseModel: string;
  baseAccuracy: Record<string, number>;
  /** The target skills learned, in order. */
  targets: string[];
  heldout: string[];
  methods: MethodResult[];
  /** The learning level at which methods are compared (see matched-learning.ts); null when no method learned. */
  matchedLevel: number | null;
  /** The largest learning level every method reaches (the matched level is half of it). */
  commonReach: number | null;
  findings: Finding[];
  seconds: number;
  reportPath: string;
  jsonPath: string;
}
