// One job: its state and actions, live training and drift charts with the drift budget's limits, validation loss,
// the budget stop and kept step, and the event log.
import { useState } from 'preact/hooks';
import { api, TuneJob_State, type TuneJob } from './api.js';
import { Chart, PALETTE, type Limit, type Mark } from './chart.js';
import { EvaluatePanel } from './evaluate-panel.js';
import { baseModelLabel, fixed, jobId, policyLabel, RESTING, stateName, timeLabel } from './format.js';
import { recordDraw } from './measure.js';
import { useReportError } from './report.js';
import { CLASS_PREFIX, type BudgetMark, type JobSeries, type StepTable } from './series.js';
import { useSeries } from './use-series.js';
import { usePoll } from './use-poll.js';

const POLL_MS = 2000;
const LOG_SHOWN = 200;

/** The drift charts: one per probe figure, with the drift-budget limit that applies to it, if any. */
const DRIFT_CHARTS: readonly {
  id: string;
  title: string;
  field: 'klToBase' | 'numberMassDelta' | 'top1Agreement' | 'heldoutLossDelta';
  label: string;
  color: number;
  limit?: { field: 'maxKlToBase' | 'maxNumberMassDelta' | 'maxHeldoutLossDelta'; name: string };
}[] = [
  { id: 'kl-to-base', title: 'KL to base (nats)', field: 'klToBase', label: 'KL', color: 0, limit: { field: 'maxKlToBase', name: 'max_kl_to_base' } },
  { id: 'number-mass-delta', title: 'number-token mass change', field: 'numberMassDelta', label: 'Δ number mass', color: 1, limit: { field: 'maxNumberMassDelta', name: 'max_number_mass_delta' } },
  { id: 'top1-agreement', title: 'top-1 agreement with base', field: 'top1Agreement', label: 'top-1 agreement', color: 2 },
  { id: 'heldout-loss-delta', title: 'held-out loss change', field: 'heldoutLossDelta', label: 'Δ held-out loss', color: 3, limit: { field: 'maxHeldoutLossDelta', name: 'max_heldout_loss_delta' } },
];

export function JobView({ id }: { id: string }) {
  const name = `jobs/${id}`;
  const report = useReportError();
  const [job, setJob] = useState<TuneJob | null>(null);
  const { series: [series], version, status: [status] } = useSeries([name], report);

  usePoll(
    async (signal) => {
      const j = await api.getTuneJob({ name }, { signal });
      setJob(j.job ?? null);
      return !RESTING.has(j.job?.state ?? TuneJob_State.RUNNING);
    },
    POLL_MS,
    [name],
    report,
  );

  const cancel = async () => {
    try {
      const r = await api.cancelTuneJob({ name });
      setJob(r.job ?? job);
    } catch (e) {
      report(e);
    }
  };

  if (!job) return <p class="muted">Loading {name}…</p>;
  const s = series!;
  const budget = job.request?.driftBudget;
  const stop: BudgetMark | null = s.budgetStop ?? (job.budgetStop ? { ...job.budgetStop } : null);
  const marks: Mark[] = stop
    ? [
        { x: stop.step, label: 'budget stop', color: '#c62828' },
        { x: stop.keptStep, label: 'kept', color: '#2e7d32' },
      ]
    : [];
  const state = stateName(job.state);
  const step = job.progress?.step ?? 0;
  const total = job.progress?.totalSteps || s.totalSteps;
  const line = (label: string, i = 0) => [{ label, color: PALETTE[i]! }];
  const sparse = (label: string, i = 0) => [{ label, color: PALETTE[i]!, points: true }];

  return (
    <section class="job">
      <header class="job-head">
        <h2 class="mono">{jobId(name)}</h2>
        <span class={`badge state-${state.toLowerCase()}`}>{state.toLowerCase()}</span>
        {status?.kind === 'reconnecting' && <span class="badge warn" title={status.why}>reconnecting…</span>}
        <div class="actions">
          {!RESTING.has(job.state) && (
            <button class="danger" onClick={cancel}>
              Cancel
            </button>
          )}
          <a class="button" href={`#/?compare=${jobId(name)}`}>
            Compare…
          </a>
        </div>
      </header>
      <dl class="facts">
        <Fact k="progress" v={total ? `${step} / ${total}` : '–'} />
        <Fact k="base model" v={baseModelLabel(job)} />
        <Fact k="policy" v={policyLabel(job)} />
        {/* An adapter or an LwF term: the one-line summary says which, with its settings. */}
        {(job.method?.kind === 'lora' || job.method?.lwf) && <Fact k="method" v={job.method.summary} />}
        <Fact k="provider" v={s.provider || '–'} />
        <Fact k="created" v={timeLabel(job.createTime)} />
        {job.outputPath && <Fact k="output" v={job.outputPath} />}
      </dl>
      {job.error && <p class="error">Failed: {job.error.message}</p>}
      {stop && (
        <p class="banner budget">
          Drift budget: <b>{stop.limit}</b> reached {fixed(stop.value, 4)} (limit {fixed(stop.threshold, 4)}) at step {stop.step}; the job kept step{' '}
          {stop.keptStep}
          {stop.keptStep === 0 ? ' (the base weights)' : ''}.
        </p>
      )}

      <h3>Training</h3>
      <div class="charts">
        <Chart id="loss" title="loss" data={cols(s.steps, 'loss')} lines={line('loss')} version={version} marks={marks} onDraw={() => recordDraw(name, s.lastSequence)} />
        <Chart id="lr" title="learning rate" data={cols(s.steps, 'learningRate')} lines={line('lr', 1)} version={version} marks={marks} />
        <Chart id="grad-norm" title="gradient norm" data={cols(s.steps, 'gradNorm')} lines={line('grad norm', 2)} version={version} marks={marks} />
        <Chart id="tokens-per-second" title="tokens / s" data={cols(s.steps, 'tokensPerSecond')} lines={line('tok/s', 4)} version={version} marks={marks} />
        {s.validation.x.length > 0 && (
          <Chart id="validation-loss" title="validation loss" data={cols(s.validation, 'loss')} lines={sparse('validation loss', 3)} version={version} marks={marks} />
        )}
      </div>

      <h3>Drift from the base model</h3>
      {s.probes.x.length === 0 ? (
        <p class="muted">No probes yet{job.request?.probeData ? '' : ': the job was started without probe data'}.</p>
      ) : (
        <div class="charts">
          {DRIFT_CHARTS.map((c) => (
            <Chart
              key={c.id}
              id={c.id}
              title={c.title}
              data={cols(s.probes, c.field)}
              lines={sparse(c.label, c.color)}
              version={version}
              marks={marks}
              limits={c.limit ? limit(budget?.[c.limit.field], c.limit.name) : undefined}
            />
          ))}
          <ClassChart table={s.probes} version={version} marks={marks} />
        </div>
      )}

      {job.state === TuneJob_State.SUCCEEDED && <EvaluatePanel job={job} />}

      <EventLog series={s} version={version} />
    </section>
  );
}

function Fact({ k, v }: { k: string; v: string }) {
  return (
    <div>
      <dt>{k}</dt>
      <dd class="ellipsis" title={v}>
        {v}
      </dd>
    </div>
  );
}

/** [x, column] for uPlot; a new outer array each render, the columns themselves shared. */
function cols(t: StepTable, ...names: string[]): [number[], ...(number | null)[][]] {
  return [t.x, ...names.map((n) => t.column(n))];
}

const limit = (v: number | undefined, label: string): Limit[] => (v === undefined ? [] : [{ value: v, label }]);

function ClassChart({ table, version, marks }: { table: StepTable; version: number; marks: Mark[] }) {
  const names = table.names().filter((n) => n.startsWith(CLASS_PREFIX));
  if (names.length === 0) return null;
  return (
    <Chart
      key={names.join()}
      id="token-classes"
      title="token-class mass change"
      data={cols(table, ...names)}
      lines={names.map((n, i) => ({ label: n.slice(CLASS_PREFIX.length), color: PALETTE[(i + 4) % PALETTE.length]!, points: true }))}
      version={version}
      marks={marks}
    />
  );
}

function EventLog({ series }: { series: JobSeries; version: number }) {
  const [steps, setSteps] = useState(false);
  const lines = series.log.filter((l) => steps || l.kind !== 'step').slice(-LOG_SHOWN).reverse();
  return (
    <section class="log">
      <h3>
        Events{' '}
        <label class="small">
          <input type="checkbox" checked={steps} onChange={() => setSteps(!steps)} /> steps
        </label>
      </h3>
      <ol>
        {lines.map((l) => (
          <li key={l.sequence} class={`ev-${l.kind}`}>
            <span class="mono muted">
              #{l.sequence} {new Date(l.timeMs).toLocaleTimeString()}
            </span>{' '}
            {l.text}
          </li>
        ))}
      </ol>
    </section>
  );
}
