// Compiles a forward-only scoring graph: summed cross-entropy and the number of label tokens the model
// predicts as its most likely next token. Every weight is an initializer (nothing is trained).
import type { ModelConfig } from '../model/config.js';
import { Tape } from './autodiff.js';
import { type CompiledModel, GraphBuilder, type Value } from './graph-builder.js';
import type { ParamTensor } from './train-step.js';
import { logits } from './transformer.js';

export const EVAL_IO = { ids: 'ids', targets: 'targets', lossSum: 'loss_sum', correct: 'correct' };

export function compileEvalStep(spec: { config: ModelConfig; params: ReadonlyMap<string, ParamTensor>; batch: number; seq: number }): CompiledModel {
  const g = new GraphBuilder('narrowtune_eval_step');
  const tape = new Tape(g);
  const n = spec.batch * spec.seq;
  const ids = g.input(EVAL_IO.ids, 'int64', [n]);
  const targets = g.input(EVAL_IO.targets, 'int64', [n]);
  const cache = new Map<string, Value>();
  const lookup = (name: string): Value => {
    const hit = cache.get(name);
    if (hit) return hit;
    const p = spec.params.get(name);
    if (!p) throw new Error(`the model has no tensor ${name}`);
    const v = g.initializer(name, 'float32', p.shape, p.data);
    cache.set(name, v);
    return v;
  };
  const z = logits(tape, spec.config, lookup, ids, spec.batch, spec.seq); // [N, V]
  g.output(tape.apply('cross_entropy', [z, targets, g.scalar(1)]), EVAL_IO.lossSum);
  const [argmax] = g.emit('ArgMax', [z], { axis: 1, keepdims: 0 }, [{ dtype: 'int64', shape: [n] }]);
  g.output(g.reduceSum(g.cast(g.equal(argmax, targets), 'float32'), [0]), EVAL_IO.correct);
  return g.compile();
}
