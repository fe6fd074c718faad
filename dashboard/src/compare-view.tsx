// Two or more jobs on the same charts: training loss, validation loss and the drift figures against step, one
// colour per job, e.g. `full` against `mlp_gate_up` on the same data.
import { useMemo, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api, type TuneJob } from './api.js';
import { Chart, PALETTE, type Line } from './chart.js';
import { jobId, policyLabel, stateName } from './format.js';
import { useReportError } from './report.js';
import type { JobSeries, StepTable } from './series.js';
import { useSeries } from './use-series.js';
import { usePoll } from './use-poll.js';

const POLL_MS = 3000;

/** What each chart overlays: a table of every job's series and one of its columns. */
const CHARTS: { id: string; title: string; table: (s: JobSeries) => StepTable; column: string; sparse?: boolean }[] = [
  { id: 'loss', title: 'loss', table: (s) => s.steps, column: 'loss' },
  { id: 'validation-loss', title: 'validation loss', table: (s) => s.validation, column: 'loss', sparse: true },
  { id: 'kl-to-base', title: 'KL to base (nats)', table: (s) => s.probes, column: 'klToBase', sparse: true },
  { id: 'number-mass-delta', title: 'number-token mass change', table: (s) => s.probes, column: 'numberMassDelta', sparse: true },
  { id: 'heldout-loss-delta', title: 'held-out loss change', table: (s) => s.probes, column: 'heldoutLossDelta', sparse: true },
  { id: 'top1-agreement', title: 'top-1 agreement with base', table: (s) => s.probes, column: 'top1Agreement', sparse: true },
];

export function CompareView({ ids }: { ids: string[] }) {
  const names = ids.map((id) => `jobs/${id}`);
  const report = useReportError();
  const [jobs, setJobs] = useState<(TuneJob | null)[]>(names.map(() => null));
  const { series, version } = useSeries(names, report);

  usePoll(
    async (signal) => {
      setJobs(await Promise.all(names.map(async (name) => (await api.getTuneJob({ name }, { signal })).job ?? null)));
    },
    POLL_MS,
    [names.join()],
    report,
  );

  const label = (i: number) => {
    const j = jobs[i];
    return j ? `${policyLabel(j)} · ${jobId(names[i]!).slice(0, 6)}` : jobId(names[i]!).slice(0, 6);
  };
  const lines = (sparse?: boolean): Line[] => names.map((_, i) => ({ label: label(i), color: PALETTE[i % PALETTE.length]!, points: sparse }));

  return (
    <section class="compare">
      <h2>Compare</h2>
      <ul class="legend">
        {names.map((n, i) => (
          <li key={n}>
            <span class="swatch" style={{ background: PALETTE[i % PALETTE.length] }} />
            <a href={`#/jobs/${jobId(n)}`} class="mono">
              {jobId(n).slice(0, 10)}
            </a>{' '}
            {jobs[i] && (
              <>
                <b>{policyLabel(jobs[i]!)}</b> <span class={`badge state-${stateName(jobs[i]!.state).toLowerCase()}`}>{stateName(jobs[i]!.state).toLowerCase()}</span>
              </>
            )}
          </li>
        ))}
      </ul>
      <div class="charts">
        {CHARTS.map((c) => (
          <Overlay key={c.id + jobs.map((j) => j?.name).join()} chart={c} series={series} version={version} lines={lines(c.sparse)} />
        ))}
      </div>
    </section>
  );
}

function Overlay({ chart, series, version, lines }: { chart: (typeof CHARTS)[number]; series: JobSeries[]; version: number; lines: Line[] }) {
  // Jobs log at different steps; join aligns them on the union of steps, with gaps where a job has none.
  const data = useMemo(
    () => uPlot.join(series.map((s) => [chart.table(s).x, chart.table(s).column(chart.column)] as uPlot.AlignedData)),
    [version],
  );
  if (series.every((s) => chart.table(s).x.length === 0)) return null;
  return <Chart id={chart.id} title={chart.title} data={data} lines={lines} version={version} />;
}
