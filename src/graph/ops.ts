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
  /** `needs` (as in VjpContext) lets a rule that takes gradients in its forward pass skip the unneeded ones. */
  forward(g: GraphBuilder, inputs: Value[], attrs: A, needs?: boolean[]): ForwardResult;
  vjp(g: GraphBuilder, ctx: VjpContext<A>, dOut: Value): (Value | null)[];
}

const IGNORE_INDEX = -100;
/** The tanh form of GELU: 0.5x(1 + tanh(√(2/π)(x + GELU_TANH_CUBIC·x³))). */
const GELU_TANH_CUBIC = 0.044715;
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
/** quick_gelu's sigmoid slope (OpenAI CLIP). */
const QUICK_GELU_SCALE = 1.702;

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
  const p = attentionProbs(g, q, k, mask);
  return { y: g.matmul(p, repeatKv(g, v, q.shape[1] / k.shape[1])), p };
}

/** P = softmax(q·kᵀ/√hd + mask), as portableAttention takes q, k and mask. */
function attentionProbs(g: GraphBuilder, q: Value, k: Value, mask: Value): Value {
  const groups = q.shape[1] / k.shape[1];
  const scores = g.mul(g.matmul(q, swapLastTwo(g, repeatKv(g, k, groups))), g.scalar(1 / Math.sqrt(q.shape[3]), q.dtype));
  // A finite floor, not −∞, for boolean masks: a row that may attend nothing gets a uniform P, not NaN.
  const masked = mask.dtype === 'bool' ? g.where(mask, scores, g.scalar(-1e30, q.dtype)) : g.add(scores, mask);
  return g.softmax(masked, -1);
}

/** Boolean [T, T], true where key ≤ query: built at run time from two ranges, not stored as T² constants. */
function causalMask(g: GraphBuilder, t: number): Value {
  const rows = g.constant(Array.from({ length: t }, (_, i) => i), [t, 1], 'int64');
  const cols = g.constant(Array.from({ length: t }, (_, i) => i), [1, t], 'int64');
  return g.emit('LessOrEqual', [cols, rows], {}, [{ dtype: 'bool', shape: [t, t] }])[0];
}

function swapLastTwo(g: GraphBuilder, x: Value): Value {
  const r = x.shape.length;
  const perm = x.shape.map((_, i) => (i === r - 2 ? r - 1 : i === r - 1 ? r - 2 : i));
  return g.transpose(x, perm);
}

/** Σ −log softmax(logits)[target] over targets ≠ -100, and the log-probabilities [N, V] the gradient needs. */
function crossEntropySum(g: GraphBuilder, logits: Value, targets: Value): { sum: Value; logp: Value } {
  if (g.kernels === 'portable') {
    const n = logits.shape[0];
    const logp = g.logSoftmax(logits, 1); // [N, V]
    const valid = g.not(g.equal(targets, g.constant([IGNORE_INDEX], [], 'int64')));
    const safeTargets = g.reshape(g.where(valid, targets, g.constant([0], [], 'int64')), [n, 1]);
    const picked = g.reshape(g.gatherElements(logp, safeTargets, 1), [n]);
    return { sum: g.neg(g.reduceSum(g.mul(picked, g.cast(valid, logits.dtype)), [0])), logp };
  }
  const [sum, logp] = g.emit('SoftmaxCrossEntropyLoss', [logits, targets], { reduction: 'sum', ignore_index: IGNORE_INDEX }, [
    { dtype: logits.dtype, shape: [] },
    { dtype: logits.dtype, shape: logits.shape },
  ]);
  return { sum, logp };
}

/** d(scale · crossEntropySum)/dlogits = (softmax − onehot) · valid · scale; the one-hot part is a scatter. */
function crossEntropyGrad(g: GraphBuilder, logp: Value, targets: Value, scale: Value): Value {
  const n = logp.shape[0];
  const valid = g.not(g.equal(targets, g.constant([IGNORE_INDEX], [], 'int64')));
  const weight = g.mul(g.cast(valid, logp.dtype), scale); // [N]
  const safeTargets = g.where(valid, targets, g.constant([0], [], 'int64'));
  const rows = g.constant(Array.from({ length: n }, (_, i) => i), [n, 1], 'int64');
  const indices = g.concat([rows, g.reshape(safeTargets, [n, 1])], 1); // [N, 2]
  const dsoftmax = g.mul(g.exp(logp), g.reshape(weight, [n, 1]));
  return g.scatterNdAdd(dsoftmax, indices, g.neg(weight));
}

/**
 * A frozen weight stored in half precision (transformer.ts initializerLookup), cast to the graph's float type where it
 * is used. Each use gets its own Cast, so no float32 copy outlives its consumer (sessions that hold such weights turn
 * off onnxruntime's constant folding and common-subexpression elimination, which would merge or pre-compute them).
 */
function asFloat(g: GraphBuilder, x: Value): Value {
  return x.dtype === 'float16' || x.dtype === 'bfloat16' ? g.cast(x, g.float) : x;
}

/** n rows cut into pieces of at most `chunk` rows, as even as possible. */
function chunkSizes(n: number, chunk: number): number[] {
  const pieces = Math.max(1, Math.ceil(n / Math.max(1, chunk)));
  const base = Math.floor(n / pieces);
  return Array.from({ length: pieces }, (_, i) => base + (i < n % pieces ? 1 : 0));
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
    forward: (g, [x, w, b]) => ({ out: g.gemm(x, asFloat(g, w), b ?? null, { transB: true }) }),
    vjp: (g, { inputs: [x, w], needs }, dy) => [
      needs[0] ? g.gemm(dy, asFloat(g, w), null) : null, // dX = dY·W        [N, in]
      needs[1] ? g.gemm(dy, x, null, { transA: true }) : null, // dW = dYᵀ·X [out, in]
      needs[2] ? g.reduceSum(dy, [0]) : null, // db = Σ_N dY      [out]
    ],
  }),

  /** table [V, H] gathered at ids [N] → [N, H]. */
  embedding: rule({
    nondiff: [1],
    forward: (g, [table, ids]) => ({ out: asFloat(g, g.gather(table, ids, 0)) }),
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
  attention: rule<{ recompute?: boolean }>({
    forward: (g, [q, k, v], { recompute }) => {
      const [b, nh, t, hd] = q.shape;
      const kvh = k.shape[1];
      if (g.kernels === 'portable') {
        const causal = g.constant(Array.from({ length: t * t }, (_, i) => (i % t <= Math.floor(i / t) ? 0 : -Infinity)), [t, t], q.dtype);
        const { y, p } = portableAttention(g, q, k, v, causal);
        return recompute ? { out: y } : { out: y, saved: { p } };
      }
      if (recompute) {
        const [y] = g.emit('Attention', [q, k, v], { is_causal: 1 }, [{ dtype: q.dtype, shape: [b, nh, t, hd] }]);
        return { out: y };
      }
      const [y, , , p] = g.emit('Attention', [q, k, v], { is_causal: 1, qk_matmul_output_mode: 3 }, [
        { dtype: q.dtype, shape: [b, nh, t, hd] },
        { dtype: q.dtype, shape: [b, kvh, t, hd] },
        { dtype: q.dtype, shape: [b, kvh, t, hd] },
        { dtype: q.dtype, shape: [b, nh, t, t] },
      ]);
      return { out: y, saved: { p } };
    },
    vjp: (g, { inputs: [q, k, v], saved, needs }, dy) => {
      const groups = q.shape[1] / k.shape[1];
      const scale = g.scalar(1 / Math.sqrt(q.shape[3]), q.dtype);
      const kx = repeatKv(g, k, groups);
      const vx = repeatKv(g, v, groups);
      // With `recompute`, P [B, nh, T, T] is rebuilt here from q and k, so no layer holds it from its forward pass.
      const p = saved.p ?? attentionProbs(g, q, k, causalMask(g, q.shape[2]));
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
      const { sum, logp } = crossEntropySum(g, logits, targets);
      return { out: g.mul(sum, scale), saved: { logp } };
    },
    vjp: (g, { inputs: [, targets, scale], saved: { logp } }, dy) => [crossEntropyGrad(g, logp, targets, g.mul(scale, dy)), null, null],
  }),

  /**
   * cross_entropy(h · Wᵀ, targets, scale) without ever holding all N × V logits: the rows go through in chunks of
   * `chunkRows`, and each chunk's gradients towards h (and W, when it is trained) are taken right away, while its
   * softmax is at hand. Only dh [N, H] (and dW) are kept for the backward pass, instead of N × V log-probabilities,
   * and nothing is recomputed. h [N, H], W [V, H] (the LM head), targets [N], scale [].
   */
  linear_cross_entropy: rule<{ chunkRows: number }>({
    nondiff: [2, 3],
    forward: (g, [h, w, targets, scale], { chunkRows }, needs) => {
      const n = h.shape[0];
      const sizes = chunkSizes(n, chunkRows);
      const hs = sizes.length > 1 ? g.split(h, 0, sizes) : [h];
      const ts = sizes.length > 1 ? g.split(targets, 0, sizes) : [targets];
      const sums: Value[] = [];
      const dhs: Value[] = [];
      let dw: Value | null = null;
      hs.forEach((hc, i) => {
        const wf = asFloat(g, w); // a half-precision head is cast per chunk: a float32 copy lives one chunk long
        const { sum, logp } = crossEntropySum(g, g.gemm(hc, wf, null, { transB: true }), ts[i]);
        sums.push(sum);
        const dz = crossEntropyGrad(g, logp, ts[i], scale); // [rows, V]: the chunk's logits' gradient at dy = 1
        if (needs?.[0] !== false) dhs.push(g.gemm(dz, wf, null)); // [rows, H]
        if (needs?.[1]) {
          const part = g.gemm(dz, hc, null, { transA: true }); // [V, H]
          dw = dw ? g.add(dw, part) : part;
        }
      });
      const total = sums.reduce((a, b) => g.add(a, b));
      const saved: Record<string, Value> = {};
      if (dhs.length > 0) saved.dh = dhs.length > 1 ? g.concat(dhs, 0) : dhs[0];
      if (dw) saved.dw = dw;
      return { out: g.mul(total, scale), saved };
    },
    vjp: (g, { saved: { dh, dw }, needs }, dy) => [needs[0] ? g.mul(dh, dy) : null, needs[1] ? g.mul(dw, dy) : null, null, null],
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

  // Ops of the vision tower and projector (graph/vision.ts). The tower is frozen under every policy, so these
  // VJPs are written for clarity rather than speed.

  /** Joins tensors along `axis` (CLIP's class position before the patches). */
  concat: rule<{ axis: number }>({
    forward: (g, xs, { axis }) => ({ out: g.concat(xs, axis) }),
    vjp: (g, { inputs, attrs: { axis } }, dy) => {
      const ax = axis < 0 ? axis + dy.shape.length : axis;
      return inputs.length === 1 ? [dy] : g.split(dy, ax, inputs.map((x) => x.shape[ax]));
    },
  }),

  /** x[start:end] along `axis` (LLaVA's "default" feature selection drops position 0). */
  slice: rule<{ axis: number; start: number; end: number }>({
    forward: (g, [x], { axis, start, end }) => {
      const ax = axis < 0 ? axis + x.shape.length : axis;
      const sizes = [start, end - start, x.shape[ax] - end];
      if (sizes[1] === x.shape[ax]) return { out: x };
      return { out: g.split(x, ax, sizes.filter((s) => s > 0))[start > 0 ? 1 : 0] };
    },
    vjp: (g, { inputs: [x], attrs: { axis, start, end } }, dy) => {
      const ax = axis < 0 ? axis + x.shape.length : axis;
      const zeros = (n: number) => g.zeros(x.shape.map((d, i) => (i === ax ? n : d)), dy.dtype);
      const parts = [start > 0 ? zeros(start) : null, dy, end < x.shape[ax] ? zeros(x.shape[ax] - end) : null];
      const present = parts.filter((v): v is Value => v !== null);
      return [present.length === 1 ? dy : g.concat(present, ax)];
    },
  }),

  /** y = w ⊙ (x − mean)·inv + b, inv = (var + eps)^-½ over the last axis (torch.nn.LayerNorm). */
  layernorm: rule<{ eps: number }>({
    forward: (g, [x, w, b], { eps }) => {
      const centred = g.sub(x, g.reduceMean(x, [-1], true)); // [..., D]
      const variance = g.reduceMean(g.mul(centred, centred), [-1], true); // [..., 1]
      const inv = g.reciprocal(g.sqrt(g.add(variance, g.scalar(eps, x.dtype))));
      const xhat = g.mul(centred, inv);
      return { out: g.add(g.mul(xhat, w), b), saved: { inv, xhat } };
    },
    vjp: (g, { inputs: [, w], saved: { inv, xhat }, needs }, dy) => {
      // With A = dY·w: dX = inv·(A − mean(A) − xhat·mean(A ⊙ xhat)); dw = Σ dY ⊙ xhat; db = Σ dY.
      let dx: Value | null = null;
      if (needs[0]) {
        const a = g.mul(dy, w);
        const centred = g.sub(a, g.reduceMean(a, [-1], true));
        dx = g.mul(inv, g.sub(centred, g.mul(xhat, g.reduceMean(g.mul(a, xhat), [-1], true))));
      }
      return [dx, needs[1] ? g.mul(dy, xhat) : null, needs[2] ? dy : null];
    },
  }),

  /**
   * GELU x·Φ(x): 'none' is the exact erf form (torch's gelu, HF "gelu"); 'tanh' is
   * 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))) (HF "gelu_pytorch_tanh", SigLIP's).
   */
  gelu: rule<{ approximate: 'none' | 'tanh' }>({
    forward: (g, [x], { approximate }): ForwardResult => {
      const half = g.scalar(0.5, x.dtype);
      const one = g.scalar(1, x.dtype);
      if (approximate === 'tanh') {
        const x2 = g.mul(x, x);
        const th = g.tanh(g.mul(g.mul(x, g.add(one, g.mul(x2, g.scalar(GELU_TANH_CUBIC, x.dtype)))), g.scalar(SQRT_2_OVER_PI, x.dtype)));
        return { out: g.mul(g.mul(x, half), g.add(one, th)), saved: { th, x2 } };
      }
      const cdf = g.mul(half, g.add(one, g.erf(g.mul(x, g.scalar(Math.SQRT1_2, x.dtype))))); // Φ(x)
      return { out: g.mul(x, cdf), saved: { cdf } };
    },
    vjp: (g, { inputs: [x], saved, attrs: { approximate } }, dy) => {
      const half = g.scalar(0.5, x.dtype);
      const one = g.scalar(1, x.dtype);
      if (approximate === 'tanh') {
        // d/dx = 0.5(1 + th) + 0.5x(1 − th²)·√(2/π)(1 + 3·0.044715x²)
        const { th, x2 } = saved;
        const du = g.mul(g.add(one, g.mul(x2, g.scalar(3 * GELU_TANH_CUBIC, x.dtype))), g.scalar(SQRT_2_OVER_PI, x.dtype));
        const sech2 = g.sub(one, g.mul(th, th));
        return [g.mul(dy, g.add(g.mul(half, g.add(one, th)), g.mul(g.mul(g.mul(x, half), sech2), du)))];
      }
      // d/dx = Φ(x) + x·φ(x), φ(x) = e^(−x²/2)/√(2π)
      const pdf = g.mul(g.exp(g.mul(g.mul(x, x), g.scalar(-0.5, x.dtype))), g.scalar(1 / Math.sqrt(2 * Math.PI), x.dtype));
      return [g.mul(dy, g.add(saved.cdf, g.mul(x, pdf)))];
    },
  }),

  /** x·sigmoid(1.702x), the quick_gelu of OpenAI's CLIP (LLaVA-1.5's ViT-L/336). */
  quick_gelu: rule({
    forward: (g, [x]) => {
      const s = g.sigmoid(g.mul(x, g.scalar(QUICK_GELU_SCALE, x.dtype)));
      return { out: g.mul(x, s), saved: { s } };
    },
    vjp: (g, { inputs: [x], saved: { s } }, dy) => {
      // d/dx = s + 1.702·x·s(1 − s)
      const ds = g.mul(g.mul(s, g.sub(g.scalar(1, x.dtype), s)), g.mul(x, g.scalar(QUICK_GELU_SCALE, x.dtype)));
      return [g.mul(dy, g.add(s, ds))];
    },
  }),

  /**
   * Scaled-dot-product attention without a mask (every position sees every other: a ViT), through Attention-23
   * (is_causal 0) or, with portable kernels, portableAttention with a zero mask; q/k/v [B, nh, T, hd] → [B, nh, T, hd].
   */
  bidirectional_attention: rule({
    forward: (g, [q, k, v]) => {
      if (k.shape[1] !== q.shape[1]) throw new Error(`bidirectional_attention needs as many kv heads as query heads, got ${k.shape[1]} and ${q.shape[1]}`);
      if (g.kernels === 'portable') {
        const { y, p } = portableAttention(g, q, k, v, g.scalar(0, q.dtype));
        return { out: y, saved: { p } };
      }
      const [b, nh, t, hd] = q.shape;
      const [y, , , p] = g.emit('Attention', [q, k, v], { is_causal: 0, qk_matmul_output_mode: 3 }, [
        { dtype: q.dtype, shape: [b, nh, t, hd] },
        { dtype: q.dtype, shape: [b, nh, t, hd] },
        { dtype: q.dtype, shape: [b, nh, t, hd] },
        { dtype: q.dtype, shape: [b, nh, t, t] },
      ]);
      return { out: y, saved: { p } };
    },
    vjp: (g, { inputs: [q, k, v], saved: { p }, needs }, dy) => {
      const scale = g.scalar(1 / Math.sqrt(q.shape[3]), q.dtype);
      const dp = g.matmul(dy, swapLastTwo(g, v)); // dO·Vᵀ [B, nh, T, T]
      const ds = g.mul(p, g.sub(dp, g.reduceSum(g.mul(dp, p), [-1], true))); // softmax adjoint
      return [
        needs[0] ? g.mul(g.matmul(ds, k), scale) : null,
        needs[1] ? g.mul(g.matmul(swapLastTwo(g, ds), q), scale) : null,
        needs[2] ? g.matmul(swapLastTwo(g, p), dy) : null, // Pᵀ·dO
      ];
    },
  }),
};

export type OpName = keyof typeof OPS;
export type OpAttrs<K extends OpName> = (typeof OPS)[K] extends OpRule<infer A> ? A : never;
