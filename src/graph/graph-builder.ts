// Builds an ONNX graph with static shapes. Every emitter computes its output shape, so the
// autodiff rules can undo broadcasts and reshapes without asking onnxruntime.
import { encodeModel, type AttributeValue, type NodeProto, type TensorProto, TensorDataType } from './onnx-proto.js';

export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'bool';
/** How a frozen weight may be stored when the checkpoint holds it in half precision (ops cast it on use). */
export type HalfDType = 'float16' | 'bfloat16';
export type FloatDType = 'float32' | 'float64';
export type Shape = readonly number[];
/**
 * How ops with a fused onnxruntime kernel are lowered. 'fused': Attention-23 and SoftmaxCrossEntropyLoss,
 * fastest on the CPU provider. 'portable': the same maths in MatMul/Softmax/Reduce* nodes, which every
 * provider implements: the WebGPU provider has no kernel for the fused pair, so it would run them on the
 * CPU and copy their tensors between device and host at every step (bench/README.md, GPU).
 */
export type Kernels = 'fused' | 'portable';

export interface Value {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
}

/** opset 23 brings RMSNormalization, RotaryEmbedding and Attention; every op here runs on ORT's CPU EP. */
export const OPSET = 23;

const ELEM_TYPE: Record<DType, TensorDataType> = {
  float32: TensorDataType.FLOAT,
  float64: TensorDataType.DOUBLE,
  float16: TensorDataType.FLOAT16,
  bfloat16: TensorDataType.BFLOAT16,
  int64: TensorDataType.INT64,
  bool: TensorDataType.BOOL,
};

const BYTES: Record<DType, number> = { float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, bool: 1 };

export type TensorData = Float32Array | Float64Array | BigInt64Array | Uint8Array;

/**
 * A model whose large initializers travel beside the protobuf rather than inside it: no copy into the
 * serialised bytes, and no 2 GiB protobuf limit (onnxruntime-node's `externalData` session option).
 */
export interface CompiledModel {
  bytes: Uint8Array;
  externalData: { path: string; data: Uint8Array }[];
}

/** Initializers at least this large go to external data; small ones stay inline. */
export const EXTERNAL_DATA_MIN_BYTES = 64 * 1024;

/** GraphBuilder.erf's float64 series: where it stops and how many terms it sums. */
const ERF64_CLAMP = 6;
const ERF64_TERMS = 100;

export function numel(shape: Shape): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Numpy broadcasting of two static shapes. */
export function broadcastShapes(a: Shape, b: Shape): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`cannot broadcast [${a}] with [${b}]`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

function rawBytes(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

export class GraphBuilder {
  private nodes: NodeProto[] = [];
  private initializers: TensorProto[] = [];
  private inputs: Value[] = [];
  private outputs: Value[] = [];
  private used = new Set<string>();
  private counter = 0;
  private constants = new Map<string, Value>();

  /** `float` is the dtype of the constants the emitters create (float64 in gradient tests). */
  constructor(
    readonly name: string,
    readonly float: FloatDType = 'float32',
    readonly kernels: Kernels = 'fused',
  ) {}

  /** A unique tensor name, readable in ORT's profiler output. */
  fresh(hint: string): string {
    let name = hint;
    while (this.used.has(name)) name = `${hint}_${++this.counter}`;
    this.used.add(name);
    return name;
  }

  input(name: string, dtype: DType, shape: Shape): Value {
    if (this.used.has(name)) throw new Error(`duplicate graph input ${name}`);
    this.used.add(name);
    const v = { name, dtype, shape: [...shape] };
    this.inputs.push(v);
    return v;
  }

  initializer(name: string, dtype: DType, shape: Shape, data: TensorData): Value {
    const bytes = rawBytes(data);
    const expected = numel(shape) * BYTES[dtype];
    if (bytes.byteLength !== expected) {
      throw new Error(`initializer ${name}: ${bytes.byteLength} bytes for shape [${shape}] ${dtype}`);
    }
    const unique = this.fresh(name);
    this.initializers.push({ name: unique, dataType: ELEM_TYPE[dtype], dims: [...shape], rawData: bytes });
    return { name: unique, dtype, shape: [...shape] };
  }

  /** Small constants are deduplicated by value, so repeated `scalar(1)` costs one initializer. */
  constant(values: ArrayLike<number>, shape: Shape, dtype: DType = this.float): Value {
    const key = `${dtype}|${shape.join(',')}|${Array.from(values).join(',')}`;
    const hit = numel(shape) <= 64 ? this.constants.get(key) : undefined;
    if (hit) return hit;
    const data =
      dtype === 'float32'
        ? Float32Array.from(values)
        : dtype === 'float64'
          ? Float64Array.from(values)
          : dtype === 'int64'
            ? BigInt64Array.from(Array.from(values, (v) => BigInt(v)))
            : Uint8Array.from(values);
    const v = this.initializer('const', dtype, shape, data);
    if (numel(shape) <= 64) this.constants.set(key, v);
    return v;
  }

  scalar(x: number, dtype: DType = this.float): Value {
    return this.constant([x], [], dtype);
  }

  ints(values: number[]): Value {
    return this.constant(values, [values.length], 'int64');
  }

  output(v: Value, name: string): Value {
    const out = this.emit('Identity', [v], {}, [{ dtype: v.dtype, shape: v.shape }], name)[0];
    this.outputs.push(out);
    return out;
  }

  /** Emits one ONNX node; `outs` gives each output's dtype and static shape. */
  emit(
    opType: string,
    inputs: (Value | null)[],
    attributes: Record<string, AttributeValue>,
    outs: { dtype: DType; shape: Shape }[],
    hint = opType.toLowerCase(),
    domain?: string,
  ): Value[] {
    const outputs = outs.map((o) => ({ name: this.fresh(hint), dtype: o.dtype, shape: [...o.shape] }));
    this.nodes.push({
      opType,
      inputs: inputs.map((i) => i?.name ?? ''),
      outputs: outputs.map((o) => o.name),
      name: `n${this.nodes.length}_${opType}`,
      attributes,
      domain,
    });
    return outputs;
  }

  private unary(op: string, x: Value, attrs: Record<string, AttributeValue> = {}): Value {
    return this.emit(op, [x], attrs, [{ dtype: x.dtype, shape: x.shape }])[0];
  }

  private binary(op: string, a: Value, b: Value, dtype: DType = a.dtype): Value {
    return this.emit(op, [a, b], {}, [{ dtype, shape: broadcastShapes(a.shape, b.shape) }])[0];
  }

  add(a: Value, b: Value): Value { return this.binary('Add', a, b); }
  sub(a: Value, b: Value): Value { return this.binary('Sub', a, b); }
  mul(a: Value, b: Value): Value { return this.binary('Mul', a, b); }
  div(a: Value, b: Value): Value { return this.binary('Div', a, b); }
  pow(a: Value, b: Value): Value { return this.binary('Pow', a, b); }
  max(a: Value, b: Value): Value { return this.binary('Max', a, b); }
  min(a: Value, b: Value): Value { return this.binary('Min', a, b); }
  equal(a: Value, b: Value): Value { return this.binary('Equal', a, b, 'bool'); }
  neg(x: Value): Value { return this.unary('Neg', x); }
  sqrt(x: Value): Value { return this.unary('Sqrt', x); }
  reciprocal(x: Value): Value { return this.unary('Reciprocal', x); }
  sigmoid(x: Value): Value { return this.unary('Sigmoid', x); }
  exp(x: Value): Value { return this.unary('Exp', x); }
  log(x: Value): Value { return this.unary('Log', x); }
  not(x: Value): Value { return this.unary('Not', x); }
  identity(x: Value): Value { return this.unary('Identity', x); }
  tanh(x: Value): Value { return this.unary('Tanh', x); }

  /**
   * The error function. onnxruntime's CPU Erf is float32 only, so float64 graphs (the reference checks) sum
   * erf(x) = 2/√π · x · e^(−x²) · Σₙ (2x²)ⁿ / (1·3···(2n+1)): all terms positive, so no cancellation; with x clamped
   * to ±6 (erf(6) rounds to 1) ERF64_TERMS terms stay within 1e-15 of Python's math.erf.
   */
  erf(x: Value): Value {
    if (x.dtype !== 'float64') return this.unary('Erf', x);
    const z = this.min(this.max(x, this.scalar(-ERF64_CLAMP, x.dtype)), this.scalar(ERF64_CLAMP, x.dtype));
    const z2 = this.mul(z, z);
    const one = this.scalar(1, x.dtype);
    let s = one;
    for (let n = ERF64_TERMS; n >= 1; n--) s = this.add(one, this.mul(this.mul(z2, s), this.scalar(2 / (2 * n + 1), x.dtype)));
    return this.mul(this.mul(z, this.exp(this.neg(z2))), this.mul(s, this.scalar(2 / Math.sqrt(Math.PI), x.dtype)));
  }

  cast(x: Value, dtype: DType): Value {
    const to = ELEM_TYPE[dtype];
    return this.emit('Cast', [x], { to }, [{ dtype, shape: x.shape }])[0];
  }

  where(cond: Value, a: Value, b: Value): Value {
    const shape = broadcastShapes(cond.shape, broadcastShapes(a.shape, b.shape));
    return this.emit('Where', [cond, a, b], {}, [{ dtype: a.dtype, shape }])[0];
  }

  softmax(x: Value, axis = -1): Value { return this.unary('Softmax', x, { axis }); }

  /** log softmax along `axis`: one LogSoftmax node, or with portable kernels x − max − log Σ exp(x − max). */
  logSoftmax(x: Value, axis = -1): Value {
    if (this.kernels === 'fused') return this.unary('LogSoftmax', x, { axis });
    const shifted = this.sub(x, this.reduceMax(x, [axis], true));
    return this.sub(shifted, this.log(this.reduceSum(this.exp(shifted), [axis], true)));
  }

  /** Batched matrix product with numpy broadcasting of the leading axes. */
  matmul(a: Value, b: Value): Value {
    if (a.shape.length < 2 || b.shape.length < 2) throw new Error('matmul needs rank >= 2 operands');
    const [m, k] = a.shape.slice(-2);
    const [k2, n] = b.shape.slice(-2);
    if (k !== k2) throw new Error(`matmul inner dims differ: [${a.shape}] x [${b.shape}]`);
    const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
    return this.emit('MatMul', [a, b], {}, [{ dtype: a.dtype, shape: [...batch, m, n] }])[0];
  }

  /** 2-D Gemm: op(a)·op(b) + c. transB lets a [out, in] weight be used as stored (no Transpose copy). */
  gemm(a: Value, b: Value, c: Value | null, opts: { transA?: boolean; transB?: boolean } = {}): Value {
    const [m, k] = opts.transA ? [a.shape[1], a.shape[0]] : [a.shape[0], a.shape[1]];
    const [k2, n] = opts.transB ? [b.shape[1], b.shape[0]] : [b.shape[0], b.shape[1]];
    if (a.shape.length !== 2 || b.shape.length !== 2 || k !== k2) {
      throw new Error(`gemm shapes [${a.shape}]${opts.transA ? 'ᵀ' : ''} x [${b.shape}]${opts.transB ? 'ᵀ' : ''}`);
    }
    const attrs: Record<string, AttributeValue> = {};
    if (opts.transA) attrs.transA = 1;
    if (opts.transB) attrs.transB = 1;
    return this.emit('Gemm', c ? [a, b, c] : [a, b], attrs, [{ dtype: a.dtype, shape: [m, n] }])[0];
  }

  reshape(x: Value, shape: number[]): Value {
    if (numel(shape) !== numel(x.shape)) throw new Error(`reshape [${x.shape}] to [${shape}]`);
    if (sameShape(shape, x.shape)) return x;
    return this.emit('Reshape', [x, this.ints(shape)], {}, [{ dtype: x.dtype, shape }])[0];
  }

  transpose(x: Value, perm: number[]): Value {
    return this.emit('Transpose', [x], { perm }, [{ dtype: x.dtype, shape: perm.map((p) => x.shape[p]) }])[0];
  }

  private reduce(op: string, x: Value, axes: number[], keepdims: boolean): Value {
    const norm = axes.map((a) => (a < 0 ? a + x.shape.length : a));
    const shape = keepdims
      ? x.shape.map((d, i) => (norm.includes(i) ? 1 : d))
      : x.shape.filter((_, i) => !norm.includes(i));
    return this.emit(op, [x, this.ints(norm)], { keepdims: keepdims ? 1 : 0 }, [{ dtype: x.dtype, shape }])[0];
  }

  reduceSum(x: Value, axes: number[], keepdims = false): Value { return this.reduce('ReduceSum', x, axes, keepdims); }
  reduceMax(x: Value, axes: number[], keepdims = false): Value { return this.reduce('ReduceMax', x, axes, keepdims); }
  reduceMean(x: Value, axes: number[], keepdims = false): Value { return this.reduce('ReduceMean', x, axes, keepdims); }

  /** Sum of squares of all elements, as a scalar. */
  sumSquares(x: Value): Value {
    return this.reduce('ReduceSumSquare', x, x.shape.map((_, i) => i), false);
  }

  gather(table: Value, indices: Value, axis = 0): Value {
    const shape = [...table.shape.slice(0, axis), ...indices.shape, ...table.shape.slice(axis + 1)];
    return this.emit('Gather', [table, indices], { axis }, [{ dtype: table.dtype, shape }])[0];
  }

  /** out[i][j] = data[i][indices[i][j]] along `axis` (indices has data's rank). */
  gatherElements(data: Value, indices: Value, axis: number): Value {
    return this.emit('GatherElements', [data, indices], { axis }, [{ dtype: data.dtype, shape: indices.shape }])[0];
  }

  /** data with `updates` added at `indices` (duplicates accumulate): the adjoint of Gather. */
  scatterNdAdd(data: Value, indices: Value, updates: Value): Value {
    return this.emit('ScatterND', [data, indices, updates], { reduction: 'add' }, [{ dtype: data.dtype, shape: data.shape }])[0];
  }

  concat(xs: Value[], axis: number): Value {
    const ax = axis < 0 ? axis + xs[0].shape.length : axis;
    const shape = [...xs[0].shape];
    shape[ax] = xs.reduce((s, x) => s + x.shape[ax], 0);
    return this.emit('Concat', xs, { axis: ax }, [{ dtype: xs[0].dtype, shape }])[0];
  }

  /** Splits along `axis` into pieces of the given sizes. */
  split(x: Value, axis: number, sizes: number[]): Value[] {
    const ax = axis < 0 ? axis + x.shape.length : axis;
    const outs = sizes.map((s) => ({ dtype: x.dtype, shape: x.shape.map((d, i) => (i === ax ? s : d)) }));
    return this.emit('Split', [x, this.ints(sizes)], { axis: ax }, outs);
  }

  expand(x: Value, shape: number[]): Value {
    return this.emit('Expand', [x, this.ints(shape)], {}, [{ dtype: x.dtype, shape: broadcastShapes(x.shape, shape) }])[0];
  }

  zeros(shape: Shape, dtype: DType = this.float): Value {
    const value: TensorProto = {
      name: '',
      dataType: ELEM_TYPE[dtype],
      dims: [1],
      rawData: rawBytes(dtype === 'float32' ? new Float32Array(1) : new Float64Array(1)),
    };
    return this.emit('ConstantOfShape', [this.ints([...shape])], { value }, [{ dtype, shape }], 'zeros')[0];
  }

  get graphInputs(): readonly Value[] { return this.inputs; }
  get graphOutputs(): readonly Value[] { return this.outputs; }
  get nodeCount(): number { return this.nodes.length; }

  /** Serialised ONNX model bytes, every initializer inline. */
  toModel(): Uint8Array {
    return this.encode(this.initializers);
  }

  /** The model with large initializers as external data (what sessions are created from). */
  compile(minExternalBytes = EXTERNAL_DATA_MIN_BYTES): CompiledModel {
    const externalData: CompiledModel['externalData'] = [];
    const initializers = this.initializers.map((t) => {
      if (t.rawData.byteLength < minExternalBytes) return t;
      const path = `w${externalData.length}.bin`;
      externalData.push({ path, data: t.rawData });
      return { ...t, external: path };
    });
    return { bytes: this.encode(initializers), externalData };
  }

  private encode(initializers: TensorProto[]): Uint8Array {
    const info = (v: Value) => ({ name: v.name, elemType: ELEM_TYPE[v.dtype], shape: [...v.shape] });
    return encodeModel({
      producerName: 'narrowtune',
      producerVersion: '0.1.0',
      opsets: [{ domain: '', version: OPSET }],
      graph: {
        name: this.name,
        nodes: this.nodes,
        initializers,
        inputs: this.inputs.map(info),
        outputs: this.outputs.map(info),
      },
    });
  }
}
