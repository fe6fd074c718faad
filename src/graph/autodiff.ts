// Reverse-mode autodiff over the op table. The tape records only ops that depend on a tracked
// (trainable) tensor, so frozen weights get no gradient path at all: the freezing policy is
// enforced by the graph's construction, not by masking gradients afterwards.
import { type GraphBuilder, type Shape, type Value, sameShape } from './graph-builder.js';
import { OPS, type OpAttrs, type OpName, type OpRule } from './ops.js';

interface TapeEntry {
  op: OpName;
  inputs: Value[];
  out: Value;
  saved: Record<string, Value>;
  attrs: unknown;
  needs: boolean[];
}

/** Sums a gradient over the axes along which its input was broadcast (done once, here, for all rules). */
export function sumToShape(g: GraphBuilder, grad: Value, shape: Shape): Value {
  if (sameShape(grad.shape, shape)) return grad;
  const lead = grad.shape.length - shape.length;
  const axes: number[] = [];
  grad.shape.forEach((d, i) => {
    if (i < lead || (shape[i - lead] === 1 && d !== 1)) axes.push(i);
  });
  const reduced = axes.length > 0 ? g.reduceSum(grad, axes, true) : grad;
  return g.reshape(reduced, [...shape]);
}

/** The graph nodes [from, to) that one op's forward builder or VJP rule emitted. */
export interface Emitted {
  op: OpName;
  pass: 'forward' | 'backward';
  from: number;
  to: number;
}

/** Told of every rule's nodes as they are emitted: profiling attributes kernel time to the rule by it. */
export type EmitHook = (e: Emitted) => void;

export class Tape {
  private entries: TapeEntry[] = [];
  private tracked = new Set<string>();

  constructor(
    readonly g: GraphBuilder,
    private readonly onEmit?: EmitHook,
  ) {}

  /** Marks a tensor (a trainable parameter) as one to differentiate with respect to. */
  track(v: Value): Value {
    this.tracked.add(v.name);
    return v;
  }

  apply<K extends OpName>(op: K, inputs: (Value | undefined)[], attrs?: OpAttrs<K>): Value {
    const rule = OPS[op] as OpRule<unknown>;
    const present = inputs.filter((v): v is Value => v !== undefined);
    const needs = present.map((v, i) => this.tracked.has(v.name) && !rule.nondiff?.includes(i));
    const from = this.g.nodeCount;
    const { out, saved } = rule.forward(this.g, present, attrs ?? {}, needs);
    this.onEmit?.({ op, pass: 'forward', from, to: this.g.nodeCount });
    if (needs.some(Boolean)) {
      this.tracked.add(out.name);
      this.entries.push({ op, inputs: present, out, saved: saved ?? {}, attrs: attrs ?? {}, needs });
    }
    return out;
  }

  /** Emits the backward pass of `loss` (a scalar) and returns the gradient of each of `wrt`, in order. */
  gradients(loss: Value, wrt: Value[]): Value[] {
    const g = this.g;
    if (loss.shape.length !== 0) throw new Error(`loss must be a scalar, got shape [${loss.shape}]`);
    const grads = new Map<string, Value>([[loss.name, g.scalar(1, loss.dtype)]]);
    for (let e = this.entries.length - 1; e >= 0; e--) {
      const entry = this.entries[e];
      const dOut = grads.get(entry.out.name);
      if (!dOut) continue;
      const rule = OPS[entry.op] as OpRule<unknown>;
      const from = g.nodeCount;
      const inputGrads = rule.vjp(g, { inputs: entry.inputs, out: entry.out, saved: entry.saved, attrs: entry.attrs, needs: entry.needs }, dOut);
      this.onEmit?.({ op: entry.op, pass: 'backward', from, to: g.nodeCount });
      if (inputGrads.length < entry.inputs.length) {
        throw new Error(`vjp of ${entry.op} returned ${inputGrads.length} gradients for ${entry.inputs.length} inputs`);
      }
      entry.inputs.forEach((input, i) => {
        if (!entry.needs[i]) return;
        const raw = inputGrads[i];
        if (!raw) throw new Error(`vjp of ${entry.op} gave no gradient for input ${i} (${input.name})`);
        const grad = sumToShape(g, raw, input.shape);
        const prior = grads.get(input.name);
        grads.set(input.name, prior ? g.add(prior, grad) : grad);
      });
    }
    // A tracked tensor that the loss does not depend on gets an explicit zero gradient.
    return wrt.map((w) => grads.get(w.name) ?? g.zeros(w.shape, w.dtype));
  }
}
