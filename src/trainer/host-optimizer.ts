// Clipping and the optimizer update on the host, in place. Used for large models: the in-graph update
// returns fresh copies of every trainable tensor and both AdamW moments each step, which for a 0.5B model
// costs ~2 GB of peak memory (bench/README.md); here p, m and v are updated where they are.
import type { OptimizerScalars, OptimizerSpec } from '../graph/optimizer.js';

/** PyTorch's clip_grad_norm_ guard, as in the graph. */
const CLIP_EPS = 1e-6;

/** Global L2 norm (accumulated in float64) and the clip coefficient, as clip_grad_norm_ computes them. */
export function clipCoefficient(grads: readonly Float32Array[], clipNorm: number | null): { norm: number; coef: number } {
  let sum = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sum += g[i] * g[i];
  const norm = Math.sqrt(sum);
  return { norm, coef: clipNorm === null ? 1 : Math.min(1, clipNorm / (norm + CLIP_EPS)) };
}

/** One torch.optim.AdamW / SGD step for one tensor, in place; `coef` scales the gradient (clipping). */
export function hostUpdate(spec: OptimizerSpec, s: OptimizerScalars, coef: number, p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array): void {
  if (spec.kind === 'sgd') {
    for (let i = 0; i < p.length; i++) p[i] -= s.lr * (g[i] * coef + spec.weightDecay * p[i]);
    return;
  }
  const { beta1, beta2, eps, weightDecay } = spec;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i] * coef;
    const mi = beta1 * m[i] + (1 - beta1) * gi;
    const vi = beta2 * v[i] + (1 - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const decayed = weightDecay === 0 ? p[i] : p[i] * s.decay;
    p[i] = decayed - (s.stepSize * mi) / (Math.sqrt(vi) / s.bc2Sqrt + eps);
  }
}
