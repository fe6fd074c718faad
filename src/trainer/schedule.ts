// Learning-rate schedules, as Hugging Face's get_{constant,cosine}_schedule_with_warmup compute them.
// `step` is the 0-based index of the optimizer step about to run, so with warm-up the first step has lr 0.

export type ScheduleKind = 'constant' | 'cosine';

export interface Schedule {
  kind: ScheduleKind;
  lr: number;
  warmupSteps: number;
  totalSteps: number;
}

export function learningRate(s: Schedule, step: number): number {
  // 1. linear warm-up from 0
  if (step < s.warmupSteps) return (s.lr * step) / Math.max(1, s.warmupSteps);
  // 2. constant after warm-up
  if (s.kind === 'constant') return s.lr;
  // 3. cosine decay to 0 over the remaining steps
  const progress = (step - s.warmupSteps) / Math.max(1, s.totalSteps - s.warmupSteps);
  return s.lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}
