// What the trainer reports while it runs. Fields carry the names the job store and the proto
// (StreamMetricsResponse) use, so nothing between the trainer and a client renames them.
import type { DriftFigures } from '../eval/scorer.js';
import type { BudgetBreach } from './monitors.js';

export interface TrainStarted {
  type: 'started';
  totalSteps: number;
  trainableTensors: string[];
  trainableParameters: number;
  /** The execution provider running the step graph. */
  provider: string;
  /** 0 for a fresh start. */
  resumedFromStep: number;
  batchSize: number;
  gradAccum: number;
  /** Padded sequence length of every batch. */
  seq: number;
  examples: number;
  frozenTensors: number;
  compileMs: number;
  sessionMs: number;
}

export interface TrainStep {
  type: 'step';
  step: number;
  totalSteps: number;
  loss: number;
  /** With LwF: the cross-entropy and the mean KL to the teacher; loss = crossEntropy + weight·T²·lwfKl. */
  crossEntropy?: number;
  lwfKl?: number;
  learningRate: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  tokens: number;
  tokensPerSecond: number;
  elapsedSeconds: number;
}

export interface TrainValidation {
  type: 'validation';
  step: number;
  loss: number;
  tokenAccuracy: number;
}

export type TrainProbe = { type: 'probe'; step: number } & DriftFigures;

/** A drift budget stopped training; `keptStep`'s weights (0: the base weights) are the result. */
export type BudgetStop = BudgetBreach & { keptStep: number };

export type TrainBudgetExceeded = { type: 'budget_exceeded' } & BudgetStop;

export interface TrainCheckpoint {
  type: 'checkpoint';
  step: number;
  path: string;
}

export interface TrainDone {
  type: 'done';
  out: string;
  finalLoss: number;
  frozenUnchanged: boolean;
}

export type TrainEvent = TrainStarted | TrainStep | TrainValidation | TrainProbe | TrainBudgetExceeded | TrainCheckpoint | TrainDone;
