// What the trainer watches while it trains: validation loss, and drift probes against the base model
// (number_mass, kl_to_base, top1_agreement, heldout_loss, user token classes) with an optional budget.
import { padLength } from '../data/batches.js';
import type { Example } from '../data/dataset.js';
import type { TextTokenizer } from '../data/tokenizer.js';
import type { TuneData } from '../data/tune-data.js';
import type { ImageFeatureTable } from '../eval/image-features.js';
import { driftFigures, Scorer, type DriftFigures } from '../eval/scorer.js';
import { compileTokenClasses } from '../eval/token-classes.js';
import type { LoraLayout } from '../graph/lora.js';
import type { ParamTensor } from '../graph/params.js';
import type { ModelConfig } from '../model/config.js';
import type { FloatArray } from '../runtime/session.js';
import type { DriftBudget, TuneOptions } from './options.js';

/** Without an explicit interval, monitors run about this many times per job (and at the last step). */
const DEFAULT_EVALUATIONS_PER_JOB = 10;

export interface BudgetBreach {
  limit: 'max_kl_to_base' | 'max_number_mass_delta' | 'max_heldout_loss_delta';
  value: number;
  threshold: number;
  step: number;
}

export function defaultInterval(totalSteps: number): number {
  return Math.max(1, Math.round(totalSteps / DEFAULT_EVALUATIONS_PER_JOB));
}

/** Whether a monitor runs after optimizer step `step` (1-based). */
export function due(step: number, every: number, totalSteps: number): boolean {
  return step % every === 0 || step === totalSteps;
}

/** The first budget limit the figures exceed, or null. */
export function checkBudget(budget: DriftBudget, f: DriftFigures, step: number): BudgetBreach | null {
  const checks: [BudgetBreach['limit'], number | null, number][] = [
    ['max_kl_to_base', budget.maxKlToBase, f.klToBase],
    ['max_number_mass_delta', budget.maxNumberMassDelta, f.numberMassDelta],
    ['max_heldout_loss_delta', budget.maxHeldoutLossDelta, f.heldoutLossDelta],
  ];
  for (const [limit, threshold, value] of checks) {
    if (threshold !== null && value > threshold) return { limit, value, threshold, step };
  }
  return null;
}

/**
 * LLaVA image features of the validation and probe files ([tokens, hidden] by their ImageDataset.images), absent for
 * a text file. The tower is frozen, so one feature set serves the tuned and the base model's probe passes.
 */
export interface MonitorImages {
  validation?: ImageFeatureTable;
  probe?: ImageFeatureTable;
}

export interface Monitors {
  validation: { every: number; run(params: ReadonlyMap<string, FloatArray>): Promise<{ loss: number; tokenAccuracy: number }> } | null;
  probe: { every: number; classNames: string[]; run(params: ReadonlyMap<string, FloatArray>): Promise<DriftFigures> } | null;
  release(): Promise<void>;
}

/**
 * Compiles the scoring graphs of the validation and probe datasets (setup loads them). The probe graph holds the
 * base model's trainable tensors as constants beside the current ones (fed per run), so KL to the base
 * is exact without storing a vocabulary-sized distribution per probe position.
 */
export async function createMonitors(
  o: TuneOptions,
  c: ModelConfig,
  tokenizer: TextTokenizer,
  data: Pick<TuneData, 'validation' | 'probe'>,
  params: ReadonlyMap<string, ParamTensor>,
  trainable: readonly string[],
  totalSteps: number,
  lora?: LoraLayout,
  images: MonitorImages = {},
): Promise<Monitors> {
  const inputs = new Set(trainable);
  const scorers: Scorer[] = [];
  const padded = (examples: Example[]) => ({ examples, seq: padLength(examples, o.seqLen) });

  let validation: Monitors['validation'] = null;
  if (data.validation) {
    const { examples, seq } = padded(data.validation.examples);
    const features = images.validation;
    const scorer = await Scorer.create({ config: c, current: { params, inputs, lora }, batch: o.batchSize, seq, image: features !== undefined }, o.device);
    scorers.push(scorer);
    validation = {
      every: o.evalEvery ?? defaultInterval(totalSteps),
      run: async (current) => {
        const s = await scorer.score(examples, tokenizer.padId, current, features);
        const n = Math.max(1, s.positions);
        return { loss: s.lossSum / n, tokenAccuracy: s.correct / n };
      },
    };
  }

  let probe: Monitors['probe'] = null;
  if (data.probe) {
    const { examples, seq } = padded(data.probe.examples);
    const classes = compileTokenClasses(tokenizer, c.vocabSize, o.tokenClasses);
    const features = images.probe;
    const scorer = await Scorer.create(
      { config: c, current: { params, inputs, lora }, base: { params }, classes: { matrix: classes.matrix, count: classes.names.length }, batch: o.batchSize, seq, image: features !== undefined },
      o.device,
    );
    scorers.push(scorer);
    probe = {
      every: o.probeEvery ?? defaultInterval(totalSteps),
      classNames: classes.names,
      run: async (current) => driftFigures(await scorer.score(examples, tokenizer.padId, current, features), classes.names),
    };
  }

  return {
    validation,
    probe,
    release: async () => {
      await Promise.all(scorers.map((s) => s.release()));
    },
  };
}
