// Clipping and the optimizer update on the host, in place. Used for large models: the in-graph update
// returns fresh copies of every trainable tensor and both AdamW moments each step, which for a 0.5B model
// costs ~2 GB of peak memory (bench/README.md); here p, m and v are updated where they are.
import type { OptimizerScalars, OptimizerSpec } from '../graph/optimizer.js';

/** PyTorch's clip_grad_norm_ guard, as in the graph. */
const CLIP_EPS = 1e-6;

/** clip_grad_norm_'s coefficient for a global gradient norm (computed in the graph). */
export function clipCoefficient(norm: number, clipNorm: number | null): number {
  return clipNorm === null ? 1 : Math.min(1, clipNorm / (norm + CLIP_EPS));
}

/** One torch.optim.AdamW / SGD step for one tensor, in place; `coef` scales the gradient (clipping). */
export function hostUpdate(spec: OptimizerSpec, s: OptimizerScalars, coef: number, p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array): void {
  if (spec.kind === 'sgd') {
    for (let i = 0; i < p.length; i++) p[i] -= s.lr * (g[i] * coef + spec.weightDecay * p[i]);
    return;
  }
  // Every loop-invariant is a local: property reads inside this loop, run over ~10^8 elements per step, made
  // it 1.35 s instead of 1.21 s for the 0.5B shape's 209M trainable values (bench/README.md).
  const { beta1, beta2, eps } = spec;
  const b1 = 1 - beta1;
  const b2 = 1 - beta2;
  const decay = spec.weightDecay === 0 ? 1 : s.decay;
  const stepSize = s.stepSize;
  // A reciprocal, not a division per element (1.21 → 0.86 s): it differs from PyTorch's v.sqrt() / bc2Sqrt by at
  // most an ulp of float64, far below the float32 the result is stored in.
  const invBc2Sqrt = 1 / s.bc2Sqrt;
  const n = p.length;
  for (let i = 0; i < n; i++) {
    const gi = g[i] * coef;
    const mi = beta1 * m[i] + b1 * gi;
    const vi = beta2 * v[i] + b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - (stepSize * mi) / (Math.sqrt(vi) * invBc2Sqrt + eps);
  }
}
