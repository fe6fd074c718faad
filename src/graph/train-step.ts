// Compiles one training step of a model under a freezing policy into a single ONNX graph:
// forward, loss, backward (only towards trainable tensors), and optionally clipping + optimizer update.
import type { ModelConfig } from '../model/config.js';
import { type EmitHook, Tape } from './autodiff.js';
import { type CompiledModel, type FloatDType, GraphBuilder, type Kernels, type Value } from './graph-builder.js';
import { lwfLoss, type LwfTerm } from './distill.js';
import { type LoraLayout, withAdapters } from './lora.js';
import { adamw, clipByGlobalNorm, globalNorm, type OptimizerSpec, sgd } from './optimizer.js';
import type { ParamTensor } from './params.js';
import { causalLmLoss, initializerLookup } from './transformer.js';

export interface TrainStepSpec {
  config: ModelConfig;
  /** Every parameter the decoder reads, in float32; frozen ones become initializers. */
  params: ReadonlyMap<string, ParamTensor>;
  trainable: readonly string[];
  batch: number;
  seq: number;
  optimizer: OptimizerSpec;
  clipNorm: number | null;
  /** Take running gradient sums as inputs (`grad_in/NAME`) and add this micro-batch's. */
  accumulate: boolean;
  /** Clip and apply the optimizer, returning new parameters; otherwise return the gradient sums. */
  update: boolean;
  /** float64 only in tests: the reference checks run the same graph in double precision. */
  dtype?: FloatDType;
  /** Lowering of attention and cross-entropy (default fused); runtime/session.ts picks it per provider. */
  kernels?: Kernels;
  /** Initializers from this size on travel as external data (default EXTERNAL_DATA_MIN_BYTES). */
  minExternalBytes?: number;
  /** Hears which nodes each op rule emitted (the benchmark's profiler). */
  onEmit?: EmitHook;
  /**
   * Learning without forgetting: adds L·T²·KL(teacher ‖ model) to the loss (graph/distill.ts). The teacher's
   * tensors are initializers; a ParamTensor it shares with `params` is stored once.
   */
  lwf?: LwfTerm & { teacher: ReadonlyMap<string, ParamTensor> };
  /** Low-rank adapters on frozen weights (graph/lora.ts); `trainable` then names their A and B tensors. */
  lora?: LoraLayout;
  /** Take LLaVA image features as inputs (IO.imageEmbeds, IO.imageMask; see ImageInputs in transformer.ts). */
  image?: boolean;
  /** Keep frozen matrices the checkpoint holds in BF16/F16 in that type (ops cast on use; runtime/session.ts halfWeights). */
  halfFrozen?: boolean;
}

/** Graph input and output names; parameters keep their Hugging Face names. */
export const IO = {
  ids: 'ids',
  targets: 'targets',
  lossScale: 'loss_scale',
  /** [N, H]: image features at image positions, zeros elsewhere. */
  imageEmbeds: 'image_embeds',
  /** [N, 1]: 1 at image positions. */
  imageMask: 'image_mask',
  lr: 'lr',
  stepSize: 'step_size',
  bc2Sqrt: 'bc2_sqrt',
  decay: 'decay',
  loss: 'loss',
  /** With lwf: the cross-entropy and the mean KL that make up `loss`. */
  ce: 'ce',
  kl: 'lwf_kl',
  gradNorm: 'grad_norm',
  gradIn: (name: string) => `grad_in/${name}`,
  gradOut: (name: string) => `grad_out/${name}`,
  m: (name: string) => `adam_m/${name}`,
  v: (name: string) => `adam_v/${name}`,
  newParam: (name: string) => `new/${name}`,
  newM: (name: string) => `new_adam_m/${name}`,
  newV: (name: string) => `new_adam_v/${name}`,
};

export interface CompiledTrainStep {
  model: CompiledModel;
  nodeCount: number;
}

export function compileTrainStep(spec: TrainStepSpec): CompiledTrainStep {
  const dtype = spec.dtype ?? 'float32';
  const g = new GraphBuilder('narrowtune_train_step', dtype, spec.kernels);
  const tape = new Tape(g, spec.onEmit);
  const n = spec.batch * spec.seq;

  const ids = g.input(IO.ids, 'int64', [n]);
  const targets = g.input(IO.targets, 'int64', [n]);
  const lossScale = g.input(IO.lossScale, dtype, []);

  // Trainable tensors are graph inputs (declared first, in policy order); frozen ones are initializers.
  const trainableInputs = spec.trainable.map((name) => {
    const p = spec.params.get(name);
    if (!p) throw new Error(`trainable tensor ${name} is not a parameter of the model`);
    return tape.track(g.input(name, dtype, p.shape));
  });
  const byName = new Map<string, Value>(spec.trainable.map((name, i) => [name, trainableInputs[i]]));
  const stored = new Map<ParamTensor, Value>();
  const frozen = initializerLookup(g, spec.params, stored, dtype, spec.halfFrozen);
  const plain = (name: string): Value => byName.get(name) ?? frozen(name);
  const lookup = spec.lora ? withAdapters(tape, plain, spec.lora) : plain;

  const image = spec.image
    ? { embeds: g.input(IO.imageEmbeds, dtype, [n, spec.config.hiddenSize]), mask: g.input(IO.imageMask, dtype, [n, 1]) }
    : undefined;
  const batch = { ids, targets, lossScale, batch: spec.batch, seq: spec.seq, image };
  let loss: Value;
  if (spec.lwf) {
    const terms = lwfLoss(tape, spec.config, lookup, initializerLookup(g, spec.lwf.teacher, stored, dtype, spec.halfFrozen), batch, spec.lwf);
    loss = terms.loss;
    g.output(terms.ce, IO.ce);
    g.output(terms.kl, IO.kl);
  } else {
    loss = causalLmLoss(tape, spec.config, lookup, batch);
  }
  g.output(loss, IO.loss);
  let grads = tape.gradients(loss, trainableInputs);
  if (spec.accumulate) {
    grads = grads.map((gr, i) => g.add(g.input(IO.gradIn(spec.trainable[i]), dtype, gr.shape), gr));
  }

  if (!spec.update) {
    grads.forEach((gr, i) => g.output(gr, IO.gradOut(spec.trainable[i])));
    // For host-side clipping: the norm in the graph reads each gradient on all cores while it is fresh; on the
    // host it took 0.2 s of a 0.5B step (bench/README.md).
    g.output(globalNorm(g, grads), IO.gradNorm);
  } else {
    const clipped = clipByGlobalNorm(g, grads, spec.clipNorm);
    g.output(clipped.norm, IO.gradNorm);
    const scalars = {
      lr: g.input(IO.lr, dtype, []),
      stepSize: g.input(IO.stepSize, dtype, []),
      bc2Sqrt: g.input(IO.bc2Sqrt, dtype, []),
      decay: g.input(IO.decay, dtype, []),
    };
    const opt = spec.optimizer;
    spec.trainable.forEach((name, i) => {
      const p = trainableInputs[i];
      if (opt.kind === 'sgd') {
        g.output(sgd(g, opt, scalars, p, clipped.grads[i]), IO.newParam(name));
      } else {
        const m = g.input(IO.m(name), dtype, p.shape);
        const v = g.input(IO.v(name), dtype, p.shape);
        const next = adamw(g, opt, scalars, p, clipped.grads[i], m, v);
        g.output(next.p, IO.newParam(name));
        g.output(next.m, IO.newM(name));
        g.output(next.v, IO.newV(name));
      }
    });
  }
  return { model: g.compile(spec.minExternalBytes), nodeCount: g.nodeCount };
}
