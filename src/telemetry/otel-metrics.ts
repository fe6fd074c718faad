// The narrowtune.* instruments on one Meter, and the only place job attributes become metric attributes.
import type { Attributes, Counter, Gauge, Histogram, Meter } from '@opentelemetry/api';
import type { DriftFigures } from '../eval/scorer.js';
import type { TrainStep } from '../trainer/events.js';

/** What every job metric is broken down by. Job ids are deliberately absent (unbounded cardinality). */
export type JobAttrs = { baseModel: string; policy: string };

export type StepSample = Pick<TrainStep, 'loss' | 'learningRate' | 'gradNorm' | 'tokensPerSecond'> & { stepSeconds?: number };

export type ProbeSample = Pick<DriftFigures, 'numberMass' | 'numberMassDelta' | 'klToBase' | 'top1Agreement' | 'heldoutLossDelta' | 'classes'>;

export const METRIC = {
  loss: 'narrowtune.train.loss',
  learningRate: 'narrowtune.train.learning_rate',
  gradNorm: 'narrowtune.train.grad_norm',
  tokensPerSecond: 'narrowtune.train.tokens_per_second',
  stepDuration: 'narrowtune.train.step_duration',
  numberMass: 'narrowtune.probe.number_mass',
  numberMassDelta: 'narrowtune.probe.number_mass_delta',
  klToBase: 'narrowtune.probe.kl_to_base',
  top1Agreement: 'narrowtune.probe.top1_agreement',
  heldoutLossDelta: 'narrowtune.probe.heldout_loss_delta',
  classMass: 'narrowtune.probe.class_mass',
  jobsFinished: 'narrowtune.jobs.finished',
} as const;

export const ATTR = {
  baseModel: 'narrowtune.base_model',
  policy: 'narrowtune.policy',
  tokenClass: 'class',
  state: 'state',
} as const;

/** Mirrors the store's resting states; imported by value would drag SQLite into every telemetry user. */
export const FINISHED_STATES: readonly string[] = ['succeeded', 'failed', 'cancelled'];

// Steps run from tens of milliseconds (tiny models) to minutes (big ones on CPU); the SDK's default
// buckets are sized for milliseconds and would put every step in the first few.
const STEP_SECONDS_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

const UNKNOWN_MODEL = 'unknown';

/** The model directory's basename: full paths leak the host's layout and split one model into many series. */
export function modelLabel(baseModel: string): string {
  const parts = baseModel.split(/[\\/]+/).filter((p) => p.length > 0);
  return parts.at(-1) ?? UNKNOWN_MODEL;
}

/** Built field by field, never spread, so a caller's extra fields (a job id) cannot slip through. */
export function jobMetricAttributes(attrs: JobAttrs): Attributes {
  return { [ATTR.baseModel]: modelLabel(attrs.baseModel), [ATTR.policy]: attrs.policy };
}

export class JobMetrics {
  private readonly loss: Gauge;
  private readonly learningRate: Gauge;
  private readonly gradNorm: Gauge;
  private readonly tokensPerSecond: Gauge;
  private readonly stepDuration: Histogram;
  private readonly numberMass: Gauge;
  private readonly numberMassDelta: Gauge;
  private readonly klToBase: Gauge;
  private readonly top1Agreement: Gauge;
  private readonly heldoutLossDelta: Gauge;
  private readonly classMass: Gauge;
  private readonly jobsFinished: Counter;

  constructor(meter: Meter) {
    this.loss = meter.createGauge(METRIC.loss, { description: 'Training loss of the latest step' });
    this.learningRate = meter.createGauge(METRIC.learningRate, { description: 'Learning rate of the latest step' });
    this.gradNorm = meter.createGauge(METRIC.gradNorm, { description: 'Global gradient norm of the latest step (before clipping)' });
    this.tokensPerSecond = meter.createGauge(METRIC.tokensPerSecond, { description: 'Training throughput of the latest step', unit: '{token}/s' });
    this.stepDuration = meter.createHistogram(METRIC.stepDuration, {
      description: 'Wall time of one optimizer step',
      unit: 's',
      advice: { explicitBucketBoundaries: STEP_SECONDS_BUCKETS },
    });
    this.numberMass = meter.createGauge(METRIC.numberMass, { description: 'Probability mass on number tokens at the probe prompts' });
    this.numberMassDelta = meter.createGauge(METRIC.numberMassDelta, { description: 'number_mass minus the base model’s number mass' });
    this.klToBase = meter.createGauge(METRIC.klToBase, { description: 'KL divergence from the base model at the probe prompts' });
    this.top1Agreement = meter.createGauge(METRIC.top1Agreement, { description: 'Fraction of probe positions whose top-1 token matches the base model' });
    this.heldoutLossDelta = meter.createGauge(METRIC.heldoutLossDelta, { description: 'Held-out loss minus the base model’s held-out loss' });
    this.classMass = meter.createGauge(METRIC.classMass, { description: 'Probability mass per token class at the probe prompts' });
    this.jobsFinished = meter.createCounter(METRIC.jobsFinished, { description: 'Jobs that reached a resting state' });
  }

  recordStep(attrs: JobAttrs, s: StepSample): void {
    const a = jobMetricAttributes(attrs);
    record(this.loss, s.loss, a);
    record(this.learningRate, s.learningRate, a);
    record(this.gradNorm, s.gradNorm, a);
    record(this.tokensPerSecond, s.tokensPerSecond, a);
    if (s.stepSeconds !== undefined && Number.isFinite(s.stepSeconds) && s.stepSeconds >= 0) this.stepDuration.record(s.stepSeconds, a);
  }

  recordProbe(attrs: JobAttrs, p: ProbeSample): void {
    const a = jobMetricAttributes(attrs);
    record(this.numberMass, p.numberMass, a);
    record(this.numberMassDelta, p.numberMassDelta, a);
    record(this.klToBase, p.klToBase, a);
    record(this.top1Agreement, p.top1Agreement, a);
    record(this.heldoutLossDelta, p.heldoutLossDelta, a);
    for (const c of p.classes) record(this.classMass, c.mass, { ...a, [ATTR.tokenClass]: c.name });
  }

  /** Counts only resting states: the counter is "jobs finished", and transitions to RUNNING are not. */
  recordJobState(attrs: JobAttrs, state: string): void {
    const normalized = state.toLowerCase();
    if (!FINISHED_STATES.includes(normalized)) return;
    this.jobsFinished.add(1, { ...jobMetricAttributes(attrs), [ATTR.state]: normalized });
  }
}

// A NaN or Infinity would poison backends' aggregates; the job's own event stream still carries the value.
function record(gauge: Gauge, value: number, attrs: Attributes): void {
  if (Number.isFinite(value)) gauge.record(value, attrs);
}
