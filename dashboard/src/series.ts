// A job's metric events folded into chart columns. Pure: no DOM, no network, so it is tested in Node.
// Steps arrive in order; a step at or before the last drawn one (a resumed job retraining from its checkpoint)
// replaces the rows from there on, so no step is ever drawn twice.
import { TuneJob_State } from '../../src/gen/es/narrowtune/v1/tuning_service_pb.js';

/** The parts of StreamMetricsResponse the dashboard draws (the generated message type fits it). */
export type MetricEvent =
  | { case: 'started'; value: { totalSteps: number; resumedFromStep: number; provider: string; trainableParameters: bigint | number } }
  | { case: 'step'; value: { step: number; totalSteps: number; loss: number; learningRate: number; gradNorm: number; tokensPerSecond: number } }
  | { case: 'validation'; value: { step: number; loss: number; tokenAccuracy: number } }
  | {
      case: 'probe';
      value: {
        step: number;
        numberMassDelta: number;
        klToBase: number;
        top1Agreement: number;
        heldoutLossDelta: number;
        classes: { name: string; delta: number }[];
      };
    }
  | { case: 'checkpoint'; value: { step: number; path: string } }
  | { case: 'budgetExceeded'; value: BudgetMark }
  | { case: 'finished'; value: { state: number; outputPath: string; error?: { message: string } } }
  | { case: undefined; value?: undefined };

export interface SequencedEvent {
  sequence: number;
  /** When the store recorded it, ms since epoch. */
  timeMs: number;
  event: MetricEvent;
}

export interface BudgetMark {
  limit: string;
  value: number;
  threshold: number;
  step: number;
  keptStep: number;
}

export interface LogLine {
  sequence: number;
  timeMs: number;
  kind: string;
  text: string;
}

/** Most recent events kept for the log; the charts keep everything. */
export const LOG_LIMIT = 500;
/** Column-name prefix of a token class's mass change in the probe table. */
export const CLASS_PREFIX = 'class:';

/** Named columns over one ascending step column; missing values are null (a gap in the line). */
export class StepTable {
  readonly x: number[] = [];
  private readonly cols = new Map<string, (number | null)[]>();

  column(name: string): (number | null)[] {
    let c = this.cols.get(name);
    if (!c) {
      c = new Array<number | null>(this.x.length).fill(null);
      this.cols.set(name, c);
    }
    return c;
  }

  names(): string[] {
    return [...this.cols.keys()];
  }

  /** Drops the rows at `step` and after. */
  truncateFrom(step: number): void {
    let n = this.x.length;
    while (n > 0 && this.x[n - 1]! >= step) n--;
    if (n === this.x.length) return;
    this.x.length = n;
    for (const c of this.cols.values()) c.length = n;
  }

  add(step: number, values: Record<string, number>): void {
    this.truncateFrom(step);
    for (const [name, v] of Object.entries(values)) this.column(name).push(Number.isFinite(v) ? v : null);
    this.x.push(step);
    for (const c of this.cols.values()) if (c.length < this.x.length) c.push(null);
  }
}

export class JobSeries {
  readonly steps = new StepTable();
  readonly probes = new StepTable();
  readonly validation = new StepTable();
  checkpoints: number[] = [];
  budgetStop: BudgetMark | null = null;
  totalSteps = 0;
  provider = '';
  finished: { state: number; outputPath: string; error?: string } | null = null;
  lastSequence = 0;
  /** The last LOG_LIMIT events, oldest first. */
  log: LogLine[] = [];

  /** Folds one event in; false for one already seen (a reconnect may repeat nothing, but a caller may). */
  apply(e: SequencedEvent): boolean {
    if (e.sequence <= this.lastSequence) return false;
    this.lastSequence = e.sequence;
    const ev = e.event;
    switch (ev.case) {
      case 'started':
        this.totalSteps = ev.value.totalSteps;
        this.provider = ev.value.provider;
        // The steps after the checkpoint it resumed from are trained again: their old rows are superseded.
        this.supersedeAfter(ev.value.resumedFromStep);
        break;
      case 'step': {
        const s = ev.value;
        this.totalSteps = s.totalSteps || this.totalSteps;
        this.steps.add(s.step, { loss: s.loss, learningRate: s.learningRate, gradNorm: s.gradNorm, tokensPerSecond: s.tokensPerSecond });
        break;
      }
      case 'validation':
        this.validation.add(ev.value.step, { loss: ev.value.loss, tokenAccuracy: ev.value.tokenAccuracy });
        break;
      case 'probe': {
        const p = ev.value;
        const values: Record<string, number> = {
          numberMassDelta: p.numberMassDelta,
          klToBase: p.klToBase,
          top1Agreement: p.top1Agreement,
          heldoutLossDelta: p.heldoutLossDelta,
        };
        for (const c of p.classes) values[CLASS_PREFIX + c.name] = c.delta;
        this.probes.add(p.step, values);
        break;
      }
      case 'checkpoint':
        this.checkpoints = this.checkpoints.filter((s) => s < ev.value.step).concat(ev.value.step);
        break;
      case 'budgetExceeded':
        this.budgetStop = { ...ev.value };
        break;
      case 'finished':
        this.finished = { state: ev.value.state, outputPath: ev.value.outputPath, error: ev.value.error?.message || undefined };
        break;
    }
    if (ev.case !== undefined) {
      this.log.push({ sequence: e.sequence, timeMs: e.timeMs, kind: ev.case, text: describe(ev) });
      if (this.log.length > LOG_LIMIT * 2) this.log = this.log.slice(-LOG_LIMIT);
    }
    return true;
  }

  private supersedeAfter(step: number): void {
    this.steps.truncateFrom(step + 1);
    this.probes.truncateFrom(step + 1);
    this.validation.truncateFrom(step + 1);
    this.checkpoints = this.checkpoints.filter((s) => s <= step);
    this.budgetStop = null;
  }
}

const num = (v: number, digits = 4) => (Number.isFinite(v) ? Number(v.toPrecision(digits)).toString() : String(v));

/** One log line for an event. */
export function describe(ev: MetricEvent): string {
  switch (ev.case) {
    case 'started':
      return `started: ${ev.value.totalSteps} steps on ${ev.value.provider}, ${ev.value.trainableParameters} trainable parameters` +
        (ev.value.resumedFromStep > 0 ? `, resumed from step ${ev.value.resumedFromStep}` : '');
    case 'step':
      return `step ${ev.value.step}/${ev.value.totalSteps}: loss ${num(ev.value.loss)}, lr ${num(ev.value.learningRate, 3)}, grad norm ${num(ev.value.gradNorm, 3)}, ${Math.round(ev.value.tokensPerSecond)} tok/s`;
    case 'validation':
      return `validation at step ${ev.value.step}: loss ${num(ev.value.loss)}, token accuracy ${num(ev.value.tokenAccuracy, 3)}`;
    case 'probe':
      return `probe at step ${ev.value.step}: KL to base ${num(ev.value.klToBase)}, number mass Δ ${num(ev.value.numberMassDelta)}, top-1 agreement ${num(ev.value.top1Agreement, 3)}, held-out loss Δ ${num(ev.value.heldoutLossDelta)}`;
    case 'checkpoint':
      return `checkpoint at step ${ev.value.step}`;
    case 'budgetExceeded':
      return `drift budget exceeded at step ${ev.value.step}: ${ev.value.limit} ${num(ev.value.value)} > ${num(ev.value.threshold)}; kept step ${ev.value.keptStep}`;
    case 'finished':
      return `finished: ${TuneJob_State[ev.value.state] ?? ev.value.state}${ev.value.error?.message ? ` (${ev.value.error.message})` : ''}`;
    default:
      return '';
  }
}
