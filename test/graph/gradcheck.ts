// Finite-difference checks of the op table's vector-Jacobian rules, in float64 on onnxruntime.
import ort from 'onnxruntime-node';
import { GraphBuilder, numel, type Kernels, type Value } from '../../src/graph/graph-builder.js';
import { sumToShape } from '../../src/graph/autodiff.js';
import { OPS, type OpName, type OpRule } from '../../src/graph/ops.js';
import { Rng } from '../../src/util/rng.js';

export interface InputSpec {
  shape: number[];
  /** int64 inputs (ids, targets) are given explicitly and never differentiated. */
  ints?: number[];
  /** Fixed float values (e.g. RoPE tables, a loss scale), not differentiated. */
  fixed?: number[];
}

export interface GradCase {
  name: string;
  op: OpName;
  inputs: InputSpec[];
  attrs?: Record<string, unknown>;
  /** The lowering the forward builder uses (default fused). */
  kernels?: Kernels;
}

export interface GradCheckResult {
  maxAbsError: number;
  maxRelError: number;
  checked: number;
}

const STEP = 1e-6;

/** Compares the rule's VJP against central differences of ⟨op(x), R⟩ for every input element. */
export async function gradCheck(c: GradCase, seed = 7): Promise<GradCheckResult> {
  const rng = new Rng(seed);
  const rule = OPS[c.op] as OpRule<unknown>;
  const g = new GraphBuilder(c.name, 'float64', c.kernels);
  const diff = c.inputs.map((s, i) => !s.ints && !s.fixed && !rule.nondiff?.includes(i));
  const values: Value[] = c.inputs.map((s, i) => g.input(`x${i}`, s.ints ? 'int64' : 'float64', s.shape));
  const { out, saved } = rule.forward(g, values, c.attrs ?? {}, diff);
  const dOut = g.input('dout', 'float64', out.shape);
  const grads = rule.vjp(g, { inputs: values, out, saved: saved ?? {}, attrs: c.attrs ?? {}, needs: diff }, dOut);
  g.output(out, 'out');
  const gradNames: string[] = [];
  grads.forEach((gr, i) => {
    if (!diff[i]) return;
    if (!gr) throw new Error(`${c.op}: no gradient for input ${i}`);
    gradNames[i] = g.output(sumToShape(g, gr, values[i].shape), `grad${i}`).name;
  });
  const session = await ort.InferenceSession.create(g.toModel());

  const data = c.inputs.map((s) =>
    s.ints ? BigInt64Array.from(s.ints.map(BigInt)) : Float64Array.from(s.fixed ?? Array.from({ length: numel(s.shape) }, () => rng.normal())),
  );
  const r = Float64Array.from({ length: numel(out.shape) }, () => rng.normal());
  const feeds = () => {
    const f: Record<string, ort.Tensor> = { dout: new ort.Tensor('float64', r, [...out.shape]) };
    c.inputs.forEach((s, i) => {
      f[`x${i}`] = new ort.Tensor(s.ints ? 'int64' : 'float64', data[i], s.shape);
    });
    return f;
  };
  const objective = async () => {
    const y = (await session.run(feeds())).out.data as Float64Array;
    return y.reduce((acc, v, i) => acc + v * r[i], 0);
  };

  const analytic = await session.run(feeds());
  let maxAbsError = 0;
  let maxRelError = 0;
  let checked = 0;
  for (let i = 0; i < c.inputs.length; i++) {
    if (!diff[i]) continue;
    const x = data[i] as Float64Array;
    const grad = analytic[gradNames[i]].data as Float64Array;
    for (let j = 0; j < x.length; j++) {
      const keep = x[j];
      x[j] = keep + STEP;
      const up = await objective();
      x[j] = keep - STEP;
      const down = await objective();
      x[j] = keep;
      const numeric = (up - down) / (2 * STEP);
      const abs = Math.abs(numeric - grad[j]);
      maxAbsError = Math.max(maxAbsError, abs);
      maxRelError = Math.max(maxRelError, abs / Math.max(1, Math.abs(numeric)));
      checked++;
    }
  }
  await session.release();
  return { maxAbsError, maxRelError, checked };
}
