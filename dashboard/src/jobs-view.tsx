// The job list: state, progress, base model, policy, creation time; filtered by state, refreshed every POLL_MS.
// Ticking two or more jobs opens them in the compare view.
import { useState } from 'preact/hooks';
import { api, TuneJob_State, type TuneJob } from './api.js';
import { baseModelLabel, jobId, FILTER_STATES, policyLabel, stateName, timeLabel } from './format.js';
import { useReportError } from './report.js';
import { usePoll } from './use-poll.js';

export const POLL_MS = 2000;
const PAGE_SIZE = 100;

export function JobsView({ preselect = [] }: { preselect?: string[] }) {
  const report = useReportError();
  const [states, setStates] = useState<TuneJob_State[]>([]);
  const [jobs, setJobs] = useState<TuneJob[] | null>(null);
  const [more, setMore] = useState(false);
  const [picked, setPicked] = useState<string[]>(() => preselect.map((id) => `jobs/${id}`));

  usePoll(
    async (signal) => {
      const r = await api.listTuneJobs({ pageSize: PAGE_SIZE, states }, { signal });
      setJobs(r.jobs);
      setMore(r.nextPageToken !== '');
    },
    POLL_MS,
    [states.join()],
    report,
  );

  const toggleState = (s: TuneJob_State) => setStates((cur) => (cur.includes(s) ? cur.filter((x) => x !== s) : [...cur, s]));
  const togglePick = (name: string) => setPicked((cur) => (cur.includes(name) ? cur.filter((x) => x !== name) : [...cur, name]));

  return (
    <section class="jobs">
      <div class="toolbar">
        <span class="label">State</span>
        {FILTER_STATES.map((s) => (
          <label key={s} class={`chip state-${stateName(s).toLowerCase()}`}>
            <input type="checkbox" checked={states.includes(s)} onChange={() => toggleState(s)} />
            {stateName(s).toLowerCase()}
          </label>
        ))}
        <a
          class={`button ${picked.length < 2 ? 'disabled' : ''}`}
          href={picked.length < 2 ? undefined : `#/compare/${picked.map(jobId).join(',')}`}
          aria-disabled={picked.length < 2}
          title="Tick two or more jobs"
        >
          Compare {picked.length > 0 ? picked.length : ''}
        </a>
      </div>
      {jobs === null ? (
        <p class="muted">Loading jobs…</p>
      ) : jobs.length === 0 ? (
        <p class="muted">No jobs{states.length ? ' in these states' : ''} yet. Start one with narrowtune's StartTune.</p>
      ) : (
        <div class="table-scroll">
          <table class="job-table">
            <thead>
              <tr>
                <th aria-label="compare" />
                <th>job</th>
                <th>state</th>
                <th>progress</th>
                <th class="wide">base model</th>
                <th>policy</th>
                <th class="wide">created</th>
              </tr>
            </thead>
            <tbody>
              {jobs.map((j) => (
                <JobRow key={j.name} job={j} picked={picked.includes(j.name)} onPick={() => togglePick(j.name)} />
              ))}
            </tbody>
          </table>
        </div>
      )}
      {more && <p class="muted">Showing the newest {PAGE_SIZE}; filter by state to see others.</p>}
    </section>
  );
}

function JobRow({ job, picked, onPick }: { job: TuneJob; picked: boolean; onPick: () => void }) {
  const step = job.progress?.step ?? 0;
  const total = job.progress?.totalSteps ?? 0;
  const state = stateName(job.state);
  return (
    <tr data-job={job.name}>
      <td>
        <input type="checkbox" checked={picked} onChange={onPick} aria-label={`compare ${job.name}`} />
      </td>
      <td class="mono">
        <a href={`#/jobs/${jobId(job.name)}`}>{jobId(job.name).slice(0, 10)}</a>
      </td>
      <td>
        <span class={`badge state-${state.toLowerCase()}`}>{state.toLowerCase()}</span>
        {job.budgetStop && <span class="badge budget" title={`${job.budgetStop.limit} exceeded at step ${job.budgetStop.step}`}>budget stop</span>}
      </td>
      <td>
        <progress max={total || 1} value={step} /> <span class="mono small">{total ? `${step}/${total}` : ''}</span>
      </td>
      <td class="ellipsis wide" title={baseModelLabel(job)}>{baseModelLabel(job)}</td>
      <td class="mono">{policyLabel(job)}</td>
      <td class="wide small">{timeLabel(job.createTime)}</td>
    </tr>
  );
}
