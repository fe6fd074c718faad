// One optimizer step of a prepared run: gradAccum micro-batches through the step session(s), then the update
// (inside the graph, or on the host above 1 GiB of frozen weights). Data order and learning rate are pure
// functions of the step number, so a resumed run takes exactly the steps an uninterrupted one would.
import type ort from 'onnxruntime-node';
import { collate, microBatchIndices } from '../data/batches.js';
import { optimizerScalars } from '../graph/optimizer.js';
import { IO } from '../graph/train-step.js';
import { floatTensor, int64Tensor, type FloatArray } from '../runtime/session.js';
import { clipCoefficient, hostUpdate } from './host-optimizer.js';
import { imageFeeds } from '../eval/image-features.js';
import { dropoutMasks } from './lora.js';
import { learningRate } from './schedule.js';
import type { TrainingRun } from './setup.js';

export interface StepResult {
  /** Optimizer steps done, this one included. */
  step: number;
  loss: number;
  /** With LwF: the cross-entropy and the mean KL to the teacher that make up `loss`. */
  crossEntropy?: number;
  lwfKl?: number;
  learningRate: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  tokens: number;
  /** Batch assembly to updated tensors. */
  seconds: number;
  /** Of which inside session.run (what a profiler trace covers). */
  sessionRunMs: number;
}

export async function optimizerStep(run: TrainingRun): Promise<StepResult> {
  const { o, state, shapes, optimizer: opt, host, seq } = run;
  const examples = run.dataset.examples;
  const trainable = run.policy.trainable;
  const f64 = o.precision === 'float64';
  const zeros = (n: number): FloatArray => (f64 ? new Float64Array(n) : new Float32Array(n));
  const scalarTensor = (x: number) => floatTensor(f64 ? Float64Array.of(x) : Float32Array.of(x), []);

  const step = state.step;
  const t0 = performance.now();
  const picked = Array.from({ length: o.gradAccum }, (_, k) => microBatchIndices(examples.length, o.batchSize, o.seed, step * o.gradAccum + k).map((i) => examples[i]));
  const batches = picked.map((exs) => collate(exs, seq, o.batchSize, run.tokenizer.padId));
  const valid = batches.reduce((sum, b) => sum + b.validTokens, 0);
  const lossScale = scalarTensor(1 / Math.max(1, valid));
  const lr = learningRate(run.schedule, step);
  let loss = 0;
  let ce = 0;
  let kl = 0;
  let sessionRunMs = 0;
  let grads: Map<string, ort.Tensor> | null = null;
  let out: ort.InferenceSession.OnnxValueMapType = {};
  for (let k = 0; k < o.gradAccum; k++) {
    const last = k === o.gradAccum - 1;
    const feeds: Record<string, ort.Tensor> = {
      [IO.ids]: int64Tensor(batches[k].inputIds, [o.batchSize * seq]),
      [IO.targets]: int64Tensor(batches[k].targets, [o.batchSize * seq]),
      [IO.lossScale]: lossScale,
    };
    if (run.images) {
      const image = imageFeeds(picked[k], run.images.features, seq, o.batchSize, run.images.hidden, f64);
      Object.assign(feeds, { [IO.imageEmbeds]: image.embeds, [IO.imageMask]: image.mask });
    }
    if (run.lora?.layout.dropout) {
      const n = o.batchSize * seq;
      for (const [name, mask] of dropoutMasks(run.lora, run.params, n, o.seed, step * o.gradAccum + k, f64)) feeds[name] = floatTensor(mask, [n, mask.length / n]);
    }
    for (const [n, data] of state.params) {
      const shape = shapes.get(n)!;
      feeds[n] = floatTensor(data, shape);
      if (o.gradAccum > 1) feeds[IO.gradIn(n)] = grads?.get(n) ?? floatTensor(zeros(data.length), shape);
      if (last && !host && opt.kind === 'adamw') {
        feeds[IO.m(n)] = floatTensor(state.m.get(n)!, shape);
        feeds[IO.v(n)] = floatTensor(state.v.get(n)!, shape);
      }
    }
    if (last && !host) {
      const sc = optimizerScalars(opt, lr, step + 1);
      Object.assign(feeds, { [IO.lr]: scalarTensor(sc.lr), [IO.stepSize]: scalarTensor(sc.stepSize), [IO.bc2Sqrt]: scalarTensor(sc.bc2Sqrt), [IO.decay]: scalarTensor(sc.decay) });
    }
    const r0 = performance.now();
    out = await (last ? run.sessions.step : run.sessions.accumulate!).session.run(feeds);
    sessionRunMs += performance.now() - r0;
    loss += Number((out[IO.loss] as ort.Tensor).data[0]);
    if (o.lwf) {
      ce += Number((out[IO.ce] as ort.Tensor).data[0]);
      kl += Number((out[IO.kl] as ort.Tensor).data[0]);
    }
    if (!last) grads = new Map(trainable.map((n) => [n, out[IO.gradOut(n)] as ort.Tensor]));
  }
  let gradNorm: number;
  if (host) {
    gradNorm = Number((out[IO.gradNorm] as ort.Tensor).data[0]);
    const coef = clipCoefficient(gradNorm, o.clipNorm);
    const sc = optimizerScalars(opt, lr, step + 1);
    for (const n of trainable) {
      const g = (out[IO.gradOut(n)] as ort.Tensor).data as Float32Array;
      hostUpdate(opt, sc, coef, state.params.get(n) as Float32Array, g, state.m.get(n) as Float32Array, state.v.get(n) as Float32Array);
    }
  } else {
    for (const n of trainable) {
      state.params.set(n, (out[IO.newParam(n)] as ort.Tensor).data as FloatArray);
      if (opt.kind === 'adamw') {
        state.m.set(n, (out[IO.newM(n)] as ort.Tensor).data as FloatArray);
        state.v.set(n, (out[IO.newV(n)] as ort.Tensor).data as FloatArray);
      }
    }
    gradNorm = Number((out[IO.gradNorm] as ort.Tensor).data[0]);
  }
  const seconds = (performance.now() - t0) / 1000;
  const tokens = batches.reduce((sum, b) => sum + b.tokens, 0);
  state.step = step + 1;
  const lwf = o.lwf ? { crossEntropy: ce, lwfKl: kl } : {};
  state.history.push({ step: state.step, loss, lr, grad_norm: gradNorm, ...(o.lwf ? { cross_entropy: ce, lwf_kl: kl } : {}) });
  return { step: state.step, loss, ...lwf, learningRate: lr, gradNorm, tokens, seconds, sessionRunMs };
}
