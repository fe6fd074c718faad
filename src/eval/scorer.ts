// Runs a compiled score graph over a dataset in fixed-size batches and turns the sums into the
// telemetry figures (each defined as a mean over label positions, so anyone can recompute them).
import type ort from 'onnxruntime-node';
import { collate } from '../data/batches.js';
import type { Example } from '../data/dataset.js';
import { compileScoreStep, SCORE_IO, type ScoreStepSpec } from '../graph/score-step.js';
import { createSessionFor, floatTensor, int64Tensor, type Device, type FloatArray, type SessionHandle, type SessionOptions } from '../runtime/session.js';
import { featureTable, imageFeeds, type ImageFeatureTable } from './image-features.js';

export interface ScoreSums {
  positions: number;
  lossSum: number;
  correct: number;
  classMass: number[];
  base?: { lossSum: number; correct: number; classMass: number[]; rowLoss?: number[] };
  klSum?: number;
  agree?: number;
  /** With a `rowLoss` spec: each example's summed cross-entropy over its label positions, in order. */
  rowLoss?: number[];
}

export interface DriftFigures {
  positions: number;
  heldoutLoss: number;
  heldoutLossBase: number;
  heldoutLossDelta: number;
  tokenAccuracy: number;
  numberMass: number;
  numberMassBase: number;
  numberMassDelta: number;
  klToBase: number;
  top1Agreement: number;
  classes: { name: string; mass: number; massBase: number; delta: number }[];
}

export class Scorer {
  private constructor(
    private readonly handle: SessionHandle,
    private readonly spec: ScoreStepSpec,
  ) {}

  static async create(spec: ScoreStepSpec, device: Device, session: Pick<SessionOptions, 'intraOpThreads'> = {}): Promise<Scorer> {
    return new Scorer(await createSessionFor((kernels) => compileScoreStep({ ...spec, kernels }), device, session), spec);
  }

  /**
   * Sums over every label position of `examples`; `inputs` are the current values of input tensors. A graph compiled
   * with `image` takes `imageFeatures` ([tokens, hidden] by ExampleImage.image) for examples with image positions.
   */
  async score(examples: readonly Example[], padId: number, inputs: ReadonlyMap<string, FloatArray> = new Map(), imageFeatures?: ImageFeatureTable): Promise<ScoreSums> {
    const { batch, seq } = this.spec;
    const c = this.spec.classes?.count ?? 0;
    const sums: ScoreSums = { positions: 0, lossSum: 0, correct: 0, classMass: new Array(c).fill(0) };
    if (this.spec.base) Object.assign(sums, { base: { lossSum: 0, correct: 0, classMass: new Array(c).fill(0) }, klSum: 0, agree: 0 });
    if (this.spec.rowLoss) {
      sums.rowLoss = [];
      if (sums.base) sums.base.rowLoss = [];
    }
    const num = (out: ort.InferenceSession.OnnxValueMapType, k: string) => Number((out[k] as ort.Tensor).data[0]);
    const vec = (out: ort.InferenceSession.OnnxValueMapType, k: string) => Array.from((out[k] as ort.Tensor).data as Float32Array);
    for (let i = 0; i < examples.length; i += batch) {
      const b = collate(examples.slice(i, i + batch), seq, batch, padId);
      const feeds: Record<string, ort.Tensor> = {
        [SCORE_IO.ids]: int64Tensor(b.inputIds, [batch * seq]),
        [SCORE_IO.targets]: int64Tensor(b.targets, [batch * seq]),
      };
      if (this.spec.image) {
        const slice = examples.slice(i, i + batch);
        if (!imageFeatures && slice.some((e) => e.images?.length)) throw new Error('examples with image positions need their image features');
        const f = imageFeeds(slice, imageFeatures ?? featureTable([]), seq, batch, this.spec.config.hiddenSize, false);
        feeds[SCORE_IO.imageEmbeds] = f.embeds;
        feeds[SCORE_IO.imageMask] = f.mask;
      }
      for (const [name, data] of inputs) feeds[SCORE_IO.param(name)] = floatTensor(data, this.spec.current.params.get(name)!.shape);
      const out = await this.handle.session.run(feeds);
      const rows = Math.min(batch, examples.length - i);
      if (sums.rowLoss) sums.rowLoss.push(...vec(out, SCORE_IO.rowLoss).slice(0, rows));
      if (sums.base?.rowLoss) sums.base.rowLoss.push(...vec(out, SCORE_IO.baseRowLoss).slice(0, rows));
      sums.positions += num(out, SCORE_IO.positions);
      sums.lossSum += num(out, SCORE_IO.lossSum);
      sums.correct += num(out, SCORE_IO.correct);
      if (c > 0) vec(out, SCORE_IO.classMass).forEach((m, j) => (sums.classMass[j] += m));
      if (sums.base) {
        sums.base.lossSum += num(out, SCORE_IO.baseLossSum);
        sums.base.correct += num(out, SCORE_IO.baseCorrect);
        if (c > 0) vec(out, SCORE_IO.baseClassMass).forEach((m, j) => (sums.base!.classMass[j] += m));
        sums.klSum! += num(out, SCORE_IO.klSum);
        sums.agree! += num(out, SCORE_IO.agree);
      }
    }
    return sums;
  }

  async release(): Promise<void> {
    await this.handle.session.release();
  }
}

/**
 * The drift figures, each a mean over label positions: number_mass is the first class's mass, the
 * rest of `classNames` are user classes. Needs sums computed with a base model.
 */
export function driftFigures(s: ScoreSums, classNames: readonly string[]): DriftFigures {
  const n = Math.max(1, s.positions);
  const base = s.base ?? { lossSum: NaN, correct: NaN, classMass: s.classMass.map(() => NaN) };
  const mass = (i: number) => s.classMass[i] / n;
  const massBase = (i: number) => base.classMass[i] / n;
  return {
    positions: s.positions,
    heldoutLoss: s.lossSum / n,
    heldoutLossBase: base.lossSum / n,
    heldoutLossDelta: (s.lossSum - base.lossSum) / n,
    tokenAccuracy: s.correct / n,
    numberMass: mass(0),
    numberMassBase: massBase(0),
    numberMassDelta: mass(0) - massBase(0),
    klToBase: (s.klSum ?? NaN) / n,
    top1Agreement: (s.agree ?? NaN) / n,
    classes: classNames.slice(1).map((name, j) => ({ name, mass: mass(j + 1), massBase: massBase(j + 1), delta: mass(j + 1) - massBase(j + 1) })),
  };
}
