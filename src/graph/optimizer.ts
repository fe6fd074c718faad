// Gradient clipping and optimizer updates as graph nodes, so a whole optimizer step is one session run.
// AdamW and SGD follow torch.optim exactly (decoupled vs coupled weight decay, bias correction, eps after sqrt).
import type { GraphBuilder, Value } from './graph-builder.js';

export type OptimizerSpec =
  | { kind: 'adamw'; beta1: number; beta2: number; eps: number; weightDecay: number }
  | { kind: 'sgd'; weightDecay: number };

/** PyTorch's clip_grad_norm_ guard against division by zero. */
const CLIP_EPS = 1e-6;

/** Per-step scalars fed to the graph; they depend on the step number and the schedule, not on shapes. */
export interface OptimizerScalars {
  lr: number;
  /** AdamW: lr / (1 − β1^t). */
  stepSize: number;
  /** AdamW: √(1 − β2^t). */
  bc2Sqrt: number;
  /** AdamW: 1 − lr·wd (decoupled decay). */
  decay: number;
}

export function optimizerScalars(spec: OptimizerSpec, lr: number, step: number): OptimizerScalars {
  if (spec.kind === 'sgd') return { lr, stepSize: lr, bc2Sqrt: 1, decay: 1 };
  return {
    lr,
    stepSize: lr / (1 - spec.beta1 ** step),
    bc2Sqrt: Math.sqrt(1 - spec.beta2 ** step),
    decay: 1 - lr * spec.weightDecay,
  };
}

/** Global L2 norm of all gradients. */
export function globalNorm(g: GraphBuilder, grads: Value[]): Value {
  return g.sqrt(grads.map((gr) => g.sumSquares(gr)).reduce((acc, s) => g.add(acc, s)));
}

/** Global L2 norm of all gradients and, when clipNorm is set, the gradients scaled to at most that norm. */
export function clipByGlobalNorm(g: GraphBuilder, grads: Value[], clipNorm: number | null): { grads: Value[]; norm: Value } {
  const norm = globalNorm(g, grads);
  if (clipNorm === null) return { grads, norm };
  const coef = g.min(g.div(g.scalar(clipNorm), g.add(norm, g.scalar(CLIP_EPS))), g.scalar(1));
  return { grads: grads.map((gr) => g.mul(gr, coef)), norm };
}

export interface ScalarInputs {
  lr: Value;
  stepSize: Value;
  bc2Sqrt: Value;
  decay: Value;
}

/** torch.optim.AdamW: p ← p(1 − lr·wd); m, v moments; p ← p − lr/bc1 · m / (√v/√bc2 + eps). */
export function adamw(
  g: GraphBuilder,
  spec: Extract<OptimizerSpec, { kind: 'adamw' }>,
  s: ScalarInputs,
  p: Value,
  grad: Value,
  m: Value,
  v: Value,
): { p: Value; m: Value; v: Value } {
  const decayed = spec.weightDecay === 0 ? p : g.mul(p, s.decay);
  const m2 = g.add(g.mul(m, g.scalar(spec.beta1)), g.mul(grad, g.scalar(1 - spec.beta1)));
  const v2 = g.add(g.mul(v, g.scalar(spec.beta2)), g.mul(g.mul(grad, grad), g.scalar(1 - spec.beta2)));
  const denom = g.add(g.div(g.sqrt(v2), s.bc2Sqrt), g.scalar(spec.eps));
  return { p: g.sub(decayed, g.mul(g.div(m2, denom), s.stepSize)), m: m2, v: v2 };
}

/** torch.optim.SGD without momentum: coupled weight decay g ← g + wd·p, then p ← p − lr·g. */
export function sgd(g: GraphBuilder, spec: Extract<OptimizerSpec, { kind: 'sgd' }>, s: ScalarInputs, p: Value, grad: Value): Value {
  const full = spec.weightDecay === 0 ? grad : g.add(grad, g.mul(p, g.scalar(spec.weightDecay)));
  return g.sub(p, g.mul(full, s.lr));
}
