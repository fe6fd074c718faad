// Learning without forgetting (Li & Hoiem): the causal-LM loss plus a distillation term towards a frozen teacher
// whose logits come from the same graph (its weights are initializers), so no teacher output is ever stored.
// loss = CE + L·T²·KL(softmax(z_teacher/T) ‖ softmax(z/T)), the KL a mean over the same label positions as the CE.
import type { ModelConfig } from '../model/config.js';
import type { Tape } from './autodiff.js';
import type { Value } from './graph-builder.js';
import { logits, type ParamLookup, type TokenBatch } from './transformer.js';

export interface LwfTerm {
  weight: number;
  temperature: number;
}

export interface LwfLoss {
  /** CE + L·T²·KL: what is differentiated. */
  loss: Value;
  /** The cross-entropy alone (scaled as causalLmLoss's). */
  ce: Value;
  /** The mean KL alone, before L·T². */
  kl: Value;
}

export function lwfLoss(t: Tape, c: ModelConfig, student: ParamLookup, teacher: ParamLookup, batch: TokenBatch, term: LwfTerm): LwfLoss {
  const z = logits(t, c, student, batch.ids, batch.batch, batch.seq, batch.image); // [N, V]
  // Every teacher weight is an initializer, so the tape records none of these ops: no gradient path exists.
  const zTeacher = logits(t, c, teacher, batch.ids, batch.batch, batch.seq, batch.image); // [N, V]
  const ce = t.apply('cross_entropy', [z, batch.targets, batch.lossScale]);
  const kl = t.apply('distill_kl', [z, zTeacher, batch.targets, batch.lossScale], { temperature: term.temperature });
  // T² keeps the gradient scale independent of T (Hinton et al.): at high T, dKL/dz shrinks as 1/T².
  const coefficient = t.g.scalar(term.weight * term.temperature ** 2, z.dtype);
  const loss = t.apply('add', [ce, t.apply('mul', [kl, coefficient])]);
  return { loss, ce, kl };
}
