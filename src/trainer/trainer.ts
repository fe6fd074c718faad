// The fine-tuning loop, in phases: setup (load → policy → compile the step graph → initial or resumed state;
// setup.ts) → optimizer steps (step.ts), each followed by the monitors and step checkpoints → the output
// checkpoint and its receipt (write-result.ts). It blocks the thread it runs on (session.run is synchronous
// native code): callers use run-in-worker.ts or run-in-process.ts.
import { NarrowtuneError } from '../util/errors.js';
import type { BudgetStop, TrainEvent, TrainStarted } from './events.js';
import { checkBudget, due } from './monitors.js';
import type { TuneOptions } from './options.js';
import type { Receipt } from './receipt.js';
import { setup, type TrainingRun } from './setup.js';
import { saveStepCheckpoint } from './step-checkpoint.js';
import { optimizerStep } from './step.js';
import { writeResult, type Watched } from './write-result.js';

/** Training stopped on request; `step` optimizer steps are done and (with a checkpoint dir) saved. */
export class TrainingStopped extends NarrowtuneError {
  constructor(
    readonly reason: 'cancel' | 'shutdown',
    readonly step: number,
  ) {
    super('failed_precondition', `training stopped (${reason}) after step ${step}`);
    this.name = 'TrainingStopped';
  }
}

export interface TuneResult {
  out: string;
  receipt: Receipt;
  /** Set when the drift budget stopped training; the output holds the weights of `keptStep`. */
  budgetStop: BudgetStop | null;
}

/**
 * Runs a whole fine-tune. Aborting `signal` (reason 'cancel' or 'shutdown') stops it between optimizer steps,
 * after a step checkpoint when `checkpointDir` is set, with a TrainingStopped error.
 */
export async function tune(o: TuneOptions, onEvent: (e: TrainEvent) => void = () => {}, signal?: AbortSignal): Promise<TuneResult> {
  const run = await setup(o);
  const { state, totalSteps } = run;
  onEvent(startedEvent(run));

  let savedStep = state.step;
  const checkpoint = async () => {
    if (!o.checkpointDir || savedStep === state.step) return;
    const path = await saveStepCheckpoint(o.checkpointDir, state, run.shapes, run.fingerprint, o.pruneCheckpoints);
    savedStep = state.step;
    onEvent({ type: 'checkpoint', step: state.step, path });
  };
  const watched: Watched = { validation: [], probes: [], budgetStop: null };
  while (state.step < totalSteps) {
    if (signal?.aborted) {
      // Stopping keeps the work done so far: a cancelled job keeps it, a shut-down server resumes from it.
      await checkpoint();
      throw new TrainingStopped(signal.reason === 'shutdown' ? 'shutdown' : 'cancel', state.step);
    }
    const s = await optimizerStep(run);
    onEvent({
      type: 'step',
      step: s.step,
      totalSteps,
      loss: s.loss,
      ...(s.crossEntropy === undefined ? {} : { crossEntropy: s.crossEntropy, lwfKl: s.lwfKl }),
      learningRate: s.learningRate,
      gradNorm: s.gradNorm,
      tokens: s.tokens,
      tokensPerSecond: s.tokens / s.seconds,
      elapsedSeconds: (performance.now() - run.startedAt) / 1000,
    });
    if (await watch(run, watched, onEvent)) break;
    if (o.checkpointEvery && state.step % o.checkpointEvery === 0 && state.step < totalSteps) await checkpoint();
  }
  await run.monitors.release();

  const { out, receipt } = await writeResult(run, watched.budgetStop ? state.kept!.params : state.params, watched);
  const history = state.history;
  onEvent({ type: 'done', out, finalLoss: history[history.length - 1]?.loss ?? NaN, frozenUnchanged: receipt.frozen_unchanged });
  return { out, receipt, budgetStop: watched.budgetStop };
}

function startedEvent(run: TrainingRun): TrainStarted {
  return {
    type: 'started',
    totalSteps: run.totalSteps,
    resumedFromStep: run.state.step,
    batchSize: run.o.batchSize,
    gradAccum: run.o.gradAccum,
    seq: run.seq,
    examples: run.dataset.examples.length,
    trainableTensors: run.policy.trainable,
    trainableParameters: run.trainableParameters,
    frozenTensors: run.frozenBefore.size,
    provider: run.sessions.step.provider,
    compileMs: run.compileMs,
    sessionMs: run.sessionMs,
  };
}

/** Runs the monitors due after the step just taken; true when the drift budget stops training. */
async function watch(run: TrainingRun, watched: Watched, onEvent: (e: TrainEvent) => void): Promise<boolean> {
  const { monitors, state, totalSteps } = run;
  if (monitors.validation && due(state.step, monitors.validation.every, totalSteps)) {
    const v = await monitors.validation.run(state.params);
    watched.validation.push({ step: state.step, loss: v.loss, token_accuracy: v.tokenAccuracy });
    onEvent({ type: 'validation', step: state.step, ...v });
  }
  if (monitors.probe && due(state.step, monitors.probe.every, totalSteps)) {
    const figures = await monitors.probe.run(state.params);
    watched.probes.push({ step: state.step, ...figures });
    onEvent({ type: 'probe', step: state.step, ...figures });
    const breach = checkBudget(run.o.driftBudget, figures, state.step);
    if (breach) {
      // Stop here and keep the last weights that were within budget as the result.
      watched.budgetStop = { ...breach, keptStep: state.kept!.step };
      onEvent({ type: 'budget_exceeded', ...watched.budgetStop });
      return true;
    }
    state.kept = { step: state.step, params: new Map([...state.params].map(([n, a]) => [n, a.slice()])) };
  }
  return false;
}
