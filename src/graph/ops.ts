// The trainer's differentiable ops: one forward builder and one vector-Jacobian rule per op.
// Rules may return gradients at a broadcast shape; the autodiff driver sums them back to the
// input's shape. Shapes: B batch, T sequence, N = B·T tokens, H hidden, D normalised width,
// nh/kvh query/key-value heads, hd head width, V vocabulary.
import type { GraphBuilder, Value } from './graph-builder.js';

export interface ForwardResult {
  out: Value;
  /** Forward tensors the rule's VJP reuses (so the backward pass does not recompute them). */
  saved?: Record<string, Value>;
}

export interface VjpContext<A> {
  inputs: Value[];
  out: Value;
  saved: Record<string, Value>;
  attrs: A;
  /** needs[i]: whether input i needs a gradient; rules skip the work for the others. */
  needs: boolean[];
}

export interface OpRule<A = Record<string, never>> {
  /** Indices of inputs that can never carry a gradient (token ids, targets, constants). */
  nondiff?: number[];
  forward(g: GraphBuilder, inputs: Value[], attrs: A): ForwardResult;
  vjp(g: GraphBuilder, ctx: VjpContext<A>, dOut: Value): (Value | null)[];
}

const IGNORE_INDEX = -100;

function rule<A>(r: OpRule<A>): OpRule<A> {
  return r;
}

/** (x1, x2) → (−x2, x1) over the last axis: the rotation RoPE pairs with. */
function rotateHalf(g: GraphBuilder, x: Value): Value {
  const half = x.shape[x.shape.length - 1] / 2;
  const [x1, x2] = g.split(x, -1, [half, half]);
  return g.concat([g.neg(x2), x1], -1);
}

/** [B, kvh, T, hd] → [B, kvh·groups, T, hd]: key-value head j serves query heads j·groups … j·groups+groups−1. */
function repeatKv(g: GraphBuilder, x: Value, groups: number): Value {
  if (groups === 1) return x;
  const [b, kvh, t, hd] = x.shape;
  const expanded = g.expand(g.reshape(x, [b, kvh, 1, t, hd]), [b, kvh, groups, t, hd]);
  return g.reshape(expanded, [b, kvh * groups, t, hd]);
}

/** Adjoint of repeatKv: sums the gradients of each group of query heads. */
function sumKvGroups(g: GraphBuilder, dx: Value, groups: number): Value {
  if (groups === 1) return dx;
  const [b, nh, t, hd] = dx.shape;
  return g.reduceSum(g.reshape(dx, [b, nh / groups, groups, t, hd]), [2]);
}

/**
 * softmax(q·kᵀ/√hd + mask)·v and its probabilities P from MatMul/Softmax nodes, the portable form of
 * Attention-23. q [B, nh, q, hd], k/v [B, kvh, kv, hd]; `mask` is additive (float, −∞ hides) or boolean
 * (true = attend), broadcast to [B, nh, q, kv].
 */
export function portableAttention(g: GraphBuilder, q: Value, k: Value, v: Value, mask: Value): { y: Value; p: Value } {
  const groups = q.shape[1] / k.shape[1];
  const scores = g.mul(g.matmul(q, swapLastTwo(g, repeatKv(g, k, groups))), g.scalar(1 / Math.sqrt(q.shape[3]), q.dtype));
  // A finite floor, not −∞, for boolean masks: a row that may attend nothing gets a uniform P, not NaN.
  const masked = mask.dtype === 'bool' ? g.where(mask, scores, g.scalar(-1e30, q.dtype)) : g.add(scores, mask);
  const p = g.softmax(masked, -1);
  return { y: g.matmul(p, repeatKv(g, v, groups)), p };
}

function swapLastTwo(g: GraphBuilder, x: Value): Value {
  const r = x.shape.length;
  const perm = x.shape.map((_, i) => (i === r - 2 ? r - 1 : i === r - 1 ? r - 2 : i));
  return g.transpose(x, perm);
}

export const OPS = {
  /** a + b with broadcasting (residual connections, biases). */
  add: rule({
    forward: (g, [a, b]) => ({ out: g.add(a, b) }),
    vjp: (_g, _ctx, dy) => [dy, dy],
  }),

  /** a ⊙ b with broadcasting. */
  mul: rule({
    forward: (g, [a, b]) => ({ out: g.mul(a, b) }),
    vjp: (g, { inputs: [a, b], needs }, dy) => [needs[0] ? g.mul(dy, b) : null, needs[1] ? g.mul(dy, a) : null],
  }),

  /** x [N, in] · Wᵀ + b with W stored [out, in] as Hugging Face does; Gemm's transB avoids a transposed copy. */
  linear: rule({
    forward: (g, [x, w, b]) => ({ out: g.gemm(x, w, b ?? null, { transB: true }) }),
    vjp: (g, { inputs: [x, w], needs }, dy) => [
      needs[0] ? g.gemm(dy, w, null) : null, // dX = dY·W        [N, in]
      needs[1] ? g.gemm(dy, x, null, { transA: true }) : null, // dW = dYᵀ·X [out, in]
      needs[2] ? g.reduceSum(dy, [0]) : null, // db = Σ_N dY      [out]
    ],
  }),

  /** table [V, H] gathered at ids [N] → [N, H]. */
  embedding: rule({
    nondiff: [1],
    forward: (g, [table, ids]) => ({ out: g.gather(table, ids, 0) }),
    vjp: (g, { inputs: [table, ids] }, dy) => {
      const indices = g.reshape(ids, [ids.shape[0], 1]);
      return [g.scatterNdAdd(g.zeros(table.shape, table.dtype), indices, dy), null];
    },
  }),

  reshape: rule<{ shape: number[] }>({
    forward: (g, [x], { shape }) => ({ out: g.reshape(x, shape) }),
    vjp: (g, { inputs: [x] }, dy) => [g.reshape(dy, [...x.shape])],
  }),

  transpose: rule<{ perm: number[] }>({
    forward: (g, [x], { perm }) => ({ out: g.transpose(x, perm) }),
    vjp: (g, { attrs: { perm } }, dy) => {
      const inverse = perm.map((_, i) => perm.indexOf(i));
      return [g.transpose(dy, inverse)];
    },
  }),

  /** y = w ⊙ x·inv, inv = (mean(x², last axis) + eps)^-½ — Llama/Qwen RMSNorm over the last axis. */
  rmsnorm: rule<{ eps: number }>({
    forward: (g, [x, w], { eps }) => {
      const meanSquare = g.reduceMean(g.mul(x, x), [-1], true); // [..., 1]
      const inv = g.reciprocal(g.sqrt(g.add(meanSquare, g.scalar(eps, x.dtype))));
      const xhat = g.mul(x, inv); // [..., D]
      return { out: g.mul(xhat, w), saved: { inv, xhat } };
    },
    vjp: (g, { inputs: [, w], saved: { inv, xhat }, needs }, dy) => {
      // With B = dY·w·inv: dX = B − xhat·mean(B ⊙ xhat); dw = Σ dY ⊙ xhat.
      let dx: Value | null = null;
      if (needs[0]) {
        const b = g.mul(g.mul(dy, w), inv);
        dx = g.sub(b, g.mul(xhat, g.reduceMean(g.mul(b, xhat), [-1], true)));
      }
      return [dx, needs[1] ? g.mul(dy, xhat) : null];
    },
  }),

  /** silu(gate) ⊙ up, the SwiGLU of Llama/Qwen MLPs. */
  swiglu: rule({
    forward: (g, [gate, up]) => {
      const s = g.sigmoid(gate);
      const silu = g.mul(gate, s);
      return { out: g.mul(silu, up), saved: { s, silu } };
    },
    vjp: (g, { inputs: [gate, up], saved: { s, silu }, needs }, dh) => {
      // du = dh ⊙ silu(g); dg = dh ⊙ u ⊙ s ⊙ (1 + g(1 − s)).
      const one = g.scalar(1, gate.dtype);
      const dgate = needs[0]
        ? g.mul(g.mul(dh, up), g.mul(s, g.add(one, g.mul(gate, g.sub(one, s)))))
        : null;
      return [dgate, needs[1] ? g.mul(dh, silu) : null];
    },
  }),

  /** Rotary position embedding x·cos + rotate_half(x)·sin; x [B, heads, T, hd], cos/sin [T, hd]. */
  rope: rule({
    nondiff: [1, 2],
    forward: (g, [x, cos, sin]) => ({ out: g.add(g.mul(x, cos), g.mul(rotateHalf(g, x), sin)) }),
    vjp: (g, { inputs: [, cos, sin] }, dy) => {
      // A rotation: its adjoint is the same op with sin negated, i.e. rotate_half(z)ᵀ = −rotate_half(z).
      return [g.sub(g.mul(dy, cos), rotateHalf(g, g.mul(dy, sin))), null, null];
    },
  }),

  /**
   * Causal scaled-dot-product attention with grouped KV heads through ONNX Attention-23, which also
   * returns the softmax probabilities P (qk_matmul_output_mode 3) for the backward pass; with portable
   * kernels, the same P from MatMul + causal mask + Softmax. q [B, nh, T, hd], k/v [B, kvh, T, hd] → [B, nh, T, hd].
   */
  attention: rule({
    forward: (g, [q, k, v]) => {
      const [b, nh, t, hd] = q.shape;
      const kvh = k.shape[1];
      if (g.kernels === 'portable') {
        const causal = g.constant(Array.from({ length: t * t }, (_, i) => (i % t <= Math.floor(i / t) ? 0 : -Infinity)), [t, t], q.dtype);
        const { y, p } = portableAttention(g, q, k, v, causal);
        return { out: y, saved: { p } };
      }
      const [y, , , p] = g.emit('Attention', [q, k, v], { is_causal: 1, qk_matmul_output_mode: 3 }, [
        { dtype: q.dtype, shape: [b, nh, t, hd] },
        { dtype: q.dtype, shape: [b, kvh, t, hd] },
        { dtype: q.dtype, shape: [b, kvh, t, hd] },
        { dtype: q.dtype, shape: [b, nh, t, t] },
      ]);
      return { out: y, saved: { p } };
    },
    vjp: (g, { inputs: [q, k, v], saved: { p }, needs }, dy) => {
      const groups = q.shape[1] / k.shape[1];
      const scale = g.scalar(1 / Math.sqrt(q.shape[3]), q.dtype);
      const kx = repeatKv(g, k, groups);
      const vx = repeatKv(g, v, groups);
      const dv = needs[2] ? sumKvGroups(g, g.matmul(swapLastTwo(g, p), dy), groups) : null; // Pᵀ·dO
      const dp = g.matmul(dy, swapLastTwo(g, vx)); // dO·Vᵀ        [B, nh, T, T]
      const ds = g.mul(p, g.sub(dp, g.reduceSum(g.mul(dp, p), [-1], true))); // softmax adjoint
      const dq = needs[0] ? g.mul(g.matmul(ds, kx), scale) : null;
      const dk = needs[1] ? sumKvGroups(g, g.mul(g.matmul(swapLastTwo(g, ds), q), scale), groups) : null;
      return [dq, dk, dv];
    },
  }),

  /**
   * scale · Σ cross-entropy(logits [N, V], targets [N]) over targets ≠ -100. `scale` is a graph input
   * (1 / valid tokens of the whole optimizer step) so gradient accumulation matches one large batch.
   */
  cross_entropy: rule({
    nondiff: [1, 2],
    forward: (g, [logits, targets, scale]) => {
      if (g.kernels === 'portable') {
        const n = logits.shape[0];
        const logp = g.logSoftmax(logits, 1); // [N, V]
        const valid = g.not(g.equal(targets, g.constant([IGNORE_INDEX], [], 'int64')));
        const safeTargets = g.reshape(g.where(valid, targets, g.constant([0], [], 'int64')), [n, 1]);
        const picked = g.reshape(g.gatherElements(logp, safeTargets, 1), [n]);
        const sum = g.neg(g.reduceSum(g.mul(picked, g.cast(valid, logits.dtype)), [0]));
        return { out: g.mul(sum, scale), saved: { logp } };
      }
      const [sum, logp] = g.emit('SoftmaxCrossEntropyLoss', [logits, targets], { reduction: 'sum', ignore_index: IGNORE_INDEX }, [
        { dtype: logits.dtype, shape: [] },
        { dtype: logits.dtype, shape: logits.shape },
      ]);
      return { out: g.mul(sum, scale), saved: { logp } };
    },
    vjp: (g, { inputs: [logits, targets, scale], saved: { logp } }, dy) => {
      // dlogits = (softmax − onehot) · mask · scale · dy; the one-hot part is a scatter of −mask·scale.
      const n = logits.shape[0];
      const valid = g.not(g.equal(targets, g.constant([IGNORE_INDEX], [], 'int64')));
      const weight = g.mul(g.cast(valid, logits.dtype), g.mul(scale, dy)); // [N]
      const safeTargets = g.where(valid, targets, g.constant([0], [], 'int64'));
      const rows = g.constant(Array.from({ length: n }, (_, i) => i), [n, 1], 'int64');
      const indices = g.concat([rows, g.reshape(safeTargets, [n, 1])], 1); // [N, 2]
      const dsoftmax = g.mul(g.exp(logp), g.reshape(weight, [n, 1]));
      return [g.scatterNdAdd(dsoftmax, indices, g.neg(weight)), null, null];
    },
  }),

  /**
   * scale · Σ KL(softmax(teacher/T) ‖ softmax(z/T)) over the rows whose target ≠ -100: learning without forgetting's
   * distillation term (graph/distill.ts). z and teacher [N, V] logits; targets and scale as cross_entropy takes them.
   */
  distill_kl: rule<{ temperature: number }>({
    nondiff: [1, 2, 3],
    forward: (g, [z, teacher, targets, scale], { temperature }) => {
      const invT = g.scalar(1 / temperature, z.dtype);
      const logq = g.logSoftmax(g.mul(z, invT), 1); // student [N, V]
      const logp = g.logSoftmax(g.mul(teacher, invT), 1); // teacher [N, V]
      const p = g.exp(logp);
      const valid = g.cast(g.not(g.equal(targets, g.constant([IGNORE_INDEX], [], 'int64'))), z.dtype); // [N]
      const perRow = g.reduceSum(g.mul(p, g.sub(logp, logq)), [1]); // [N]
      return { out: g.mul(g.reduceSum(g.mul(perRow, valid), [0]), scale), saved: { logq, p, valid } };
    },
    vjp: (g, { inputs: [z, , , scale], saved: { logq, p, valid }, attrs: { temperature } }, dy) => {
      // dz = (softmax(z/T) − p_teacher) / T · valid · scale · dy
      const weight = g.mul(valid, g.mul(g.mul(scale, dy), g.scalar(1 / temperature, z.dtype))); // [N]
      return [g.mul(g.sub(g.exp(logq), p), g.reshape(weight, [z.shape[0], 1])), null, null, null];
    },
  }),
};

export type OpName = keyof typeof OPS;
export type OpAttrs<K extends OpName> = (typeof OPS)[K] extends OpRule<infer A> ? A : never;
