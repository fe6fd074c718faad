// Compiles a forward-only scoring graph over label positions (targets ≠ -100): loss, next-token accuracy,
// probability mass per token class, and — against a second ("base") parameter set in the same graph —
// KL(p_base ‖ p), top-1 agreement and the base's own loss and class mass. Every output is a sum over
// the batch's label positions, so callers add batches up and divide by `positions` once. Optionally also each
// row's summed cross-entropy (−log-likelihood of its labels), for multiple-choice scoring.
import type { ModelConfig } from '../model/config.js';
import { Tape } from './autodiff.js';
import { type CompiledModel, GraphBuilder, type Kernels, type Value } from './graph-builder.js';
import type { ParamTensor } from './params.js';
import { type LoraLayout, withAdapters } from './lora.js';
import { type ImageInputs, initializerLookup, logits, type ParamLookup } from './transformer.js';

export const SCORE_IO = {
  ids: 'ids',
  targets: 'targets',
  positions: 'positions',
  lossSum: 'loss_sum',
  correct: 'correct',
  classMass: 'class_mass',
  baseLossSum: 'base_loss_sum',
  baseCorrect: 'base_correct',
  baseClassMass: 'base_class_mass',
  klSum: 'kl_sum',
  agree: 'top1_agree',
  /** float32 [B] (with `rowLoss`): Σ_t −log p(target_t) over each row's label positions. */
  rowLoss: 'row_loss',
  baseRowLoss: 'base_row_loss',
  /** float32 [N, H] (with `image`): LLaVA image features at image positions, zeros elsewhere; both models read them. */
  imageEmbeds: 'image_embeds',
  /** float32 [N, 1] (with `image`): 1 at image positions. */
  imageMask: 'image_mask',
  /** Trainable tensors fed as inputs are named as in the model, prefixed so they cannot clash. */
  param: (name: string) => `param/${name}`,
};

/** One model's weights: tensors listed in `inputs` are fed per run (the weights being trained). */
export interface ParamSource {
  params: ReadonlyMap<string, ParamTensor>;
  inputs?: ReadonlySet<string>;
  /** Low-rank adapters (graph/lora.ts) whose A and B are among `params`; dropout is never applied here. */
  lora?: LoraLayout;
}

export interface ScoreStepSpec {
  config: ModelConfig;
  current: ParamSource;
  /** The reference model. Tensors given by the same ParamTensor object as `current` are stored once. */
  base?: ParamSource;
  /** [V, C] 0/1 indicator of C token classes, row-major. */
  classes?: { matrix: Float32Array; count: number };
  batch: number;
  seq: number;
  /** Also output each row's summed loss (row_loss, and base_row_loss with a base). */
  rowLoss?: boolean;
  /** Lowering of attention and the loss (default fused); runtime/session.ts picks it per provider. */
  kernels?: Kernels;
  /** Take LLaVA image features as input embeddings (SCORE_IO.imageEmbeds, imageMask; ImageInputs in transformer.ts). */
  image?: boolean;
}

export function compileScoreStep(spec: ScoreStepSpec): CompiledModel {
  const g = new GraphBuilder('narrowtune_score_step', 'float32', spec.kernels);
  const tape = new Tape(g);
  const n = spec.batch * spec.seq;
  const v = spec.config.vocabSize;
  const ids = g.input(SCORE_IO.ids, 'int64', [n]);
  const targets = g.input(SCORE_IO.targets, 'int64', [n]);
  const image: ImageInputs | undefined = spec.image
    ? { embeds: g.input(SCORE_IO.imageEmbeds, 'float32', [n, spec.config.hiddenSize]), mask: g.input(SCORE_IO.imageMask, 'float32', [n, 1]) }
    : undefined;

  const shared = new Map<ParamTensor, Value>();
  const inputs = new Map<string, Value>();
  const lookupFor = (src: ParamSource): ParamLookup => {
    const frozen = initializerLookup(g, src.params, shared);
    const lookup = (name: string): Value => {
      if (!src.inputs?.has(name)) return frozen(name);
      let input = inputs.get(name);
      if (!input) {
        input = g.input(SCORE_IO.param(name), 'float32', src.params.get(name)!.shape);
        inputs.set(name, input);
      }
      return input;
    };
    return src.lora ? withAdapters(tape, lookup, { ...src.lora, dropout: false }) : lookup;
  };

  const isLabel = g.not(g.equal(targets, g.constant([-100], [], 'int64'))); // bool [N]
  const valid = g.cast(isLabel, 'float32'); // [N]
  const validColumn = g.reshape(valid, [n, 1]);
  g.output(g.reduceSum(valid, [0]), SCORE_IO.positions);
  const masked = (perPosition: Value) => g.reduceSum(g.mul(perPosition, valid), [0]);

  const classMatrix = spec.classes ? g.initializer('token_classes', 'float32', [v, spec.classes.count], spec.classes.matrix) : null;
  const score = (src: ParamSource, prefix: '' | 'base_') => {
    const z = logits(tape, spec.config, lookupFor(src), ids, spec.batch, spec.seq, image); // [N, V]
    const logp = g.logSoftmax(z, 1); // [N, V]
    // −log p(target) per position: ignored targets gather id 0 and are zeroed.
    const perPosition = () => {
      const safe = g.reshape(g.where(isLabel, targets, g.constant([0], [], 'int64')), [n, 1]);
      return g.mul(g.neg(g.reshape(g.gatherElements(logp, safe, 1), [n])), valid); // [N]
    };
    const rowTerms = spec.rowLoss || g.kernels === 'portable' ? perPosition() : null;
    const lossSum = g.kernels === 'portable'
      ? g.reduceSum(rowTerms!, [0])
      : g.emit('SoftmaxCrossEntropyLoss', [z, targets], { reduction: 'sum', ignore_index: -100 }, [{ dtype: 'float32', shape: [] }])[0];
    g.output(lossSum, prefix ? SCORE_IO.baseLossSum : SCORE_IO.lossSum);
    const [argmax] = g.emit('ArgMax', [z], { axis: 1, keepdims: 0 }, [{ dtype: 'int64', shape: [n] }]);
    g.output(masked(g.cast(g.equal(argmax, targets), 'float32')), prefix ? SCORE_IO.baseCorrect : SCORE_IO.correct);
    if (spec.rowLoss) {
      g.output(g.reduceSum(g.reshape(rowTerms!, [spec.batch, spec.seq]), [1]), prefix ? SCORE_IO.baseRowLoss : SCORE_IO.rowLoss);
    }
    if (classMatrix) {
      const mass = g.matmul(g.exp(logp), classMatrix); // [N, C]
      g.output(g.reduceSum(g.mul(mass, validColumn), [0]), prefix ? SCORE_IO.baseClassMass : SCORE_IO.classMass);
    }
    return { logp, argmax };
  };

  const cur = score(spec.current, '');
  if (spec.base) {
    const base = score(spec.base, 'base_');
    // KL(p_base ‖ p) = Σ_v p_base (log p_base − log p), per position.
    const kl = g.reduceSum(g.mul(g.exp(base.logp), g.sub(base.logp, cur.logp)), [1]); // [N]
    g.output(masked(kl), SCORE_IO.klSum);
    g.output(masked(g.cast(g.equal(base.argmax, cur.argmax), 'float32')), SCORE_IO.agree);
  }
  return g.compile();
}
