// Which op rule emitted each node of the compiled step graph, heard from the tape while the graph is built
// (see EmitHook in src/graph/autodiff.ts): the profile attributes kernel time to forward and VJP rules by it.
import type { EmitHook, Emitted } from '../graph/autodiff.js';

/**
 * What emitted each node, by node index (the builder names nodes `n<index>_<Op>`, and onnxruntime's fused nodes
 * keep the first node's name): `fwd <op>` / `bwd <op>` for an ops.ts rule, `fwd other`, `bwd accumulate`
 * (autodiff's gradient sums and broadcast reductions) or `update` (loss output, clipping, optimizer, output
 * copies) for the rest.
 */
export type NodeSources = string[];

/** Nodes past the last one a rule emitted that may still follow (the update); all are labelled `update`. */
const TAIL_NODES = 4096;

/** `onCompile` starts a fresh record per compile: the sources are those of the last graph built. */
export function nodeSourceRecorder(): { onCompile(): EmitHook; sources(): NodeSources } {
  let emitted: Emitted[] = [];
  return {
    onCompile() {
      emitted = [];
      return (e) => emitted.push(e);
    },
    sources() {
      const label = (e: Emitted) => `${e.pass === 'forward' ? 'fwd' : 'bwd'} ${e.op}`;
      const vjps = emitted.filter((e) => e.pass === 'backward');
      const total = Math.max(0, ...emitted.map((e) => e.to));
      const firstVjp = vjps[0]?.from ?? Infinity;
      const lastVjp = Math.max(0, ...vjps.map((e) => e.to));
      const out: NodeSources = [];
      for (let i = 0; i < total + TAIL_NODES; i++) out.push(i < firstVjp ? 'fwd other' : i < lastVjp ? 'bwd accumulate' : 'update');
      for (const e of emitted) for (let i = e.from; i < e.to; i++) out[i] = label(e);
      return out;
    },
  };
}
