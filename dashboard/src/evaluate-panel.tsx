// Evaluate a finished job against its base model on datasets the user names (paths inside the server's data
// roots), and show the per-dataset table with the paper's summary: Δ learning (TARGET) and Δ forgetting (HELD_OUT).
import { useState } from 'preact/hooks';
import { api, EvalDataset_Kind, EvalDataset_Role, type EvaluateResponse, type TuneJob } from './api.js';
import { fixed, points } from './format.js';
import { useReportError } from './report.js';

interface Row {
  path: string;
  kind: EvalDataset_Kind;
  role: EvalDataset_Role;
}

const KINDS = [EvalDataset_Kind.LOSS, EvalDataset_Kind.GENERATE, EvalDataset_Kind.CHOICE];
const ROLES = [EvalDataset_Role.TARGET, EvalDataset_Role.HELD_OUT, EvalDataset_Role.ROLE_UNSPECIFIED];
const roleLabel = (r: EvalDataset_Role) => (r === EvalDataset_Role.ROLE_UNSPECIFIED ? 'report only' : EvalDataset_Role[r]!.toLowerCase());

export function EvaluatePanel({ job }: { job: TuneJob }) {
  const report = useReportError();
  const data = job.request;
  const [rows, setRows] = useState<Row[]>(() => [
    { path: data?.trainingData ?? '', kind: EvalDataset_Kind.LOSS, role: EvalDataset_Role.TARGET },
    { path: data?.probeData || data?.validationData || '', kind: EvalDataset_Kind.LOSS, role: EvalDataset_Role.HELD_OUT },
  ]);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<EvaluateResponse | null>(null);
  const [problem, setProblem] = useState<string | null>(null);

  const set = (i: number, change: Partial<Row>) => setRows(rows.map((r, j) => (j === i ? { ...r, ...change } : r)));

  const run = async (ev: Event) => {
    ev.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      setResult(
        await api.evaluate({
          model: { source: { case: 'job', value: job.name } },
          baseModel: job.request?.baseModel,
          datasets: rows.filter((r) => r.path.trim()).map((r) => ({ path: r.path.trim(), kind: r.kind, role: r.role })),
        }),
      );
    } catch (e) {
      report(e);
      setProblem(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="evaluate">
      <h3>Evaluate against the base model</h3>
      <form onSubmit={run}>
        {rows.map((r, i) => (
          <div class="eval-row" key={i}>
            <input
              class="grow"
              placeholder="dataset path (JSONL on the server)"
              value={r.path}
              onInput={(e) => set(i, { path: (e.target as HTMLInputElement).value })}
              aria-label={`dataset ${i + 1} path`}
            />
            <select value={r.kind} onChange={(e) => set(i, { kind: Number((e.target as HTMLSelectElement).value) })} aria-label={`dataset ${i + 1} kind`}>
              {KINDS.map((k) => (
                <option value={k}>{EvalDataset_Kind[k]!.toLowerCase()}</option>
              ))}
            </select>
            <select value={r.role} onChange={(e) => set(i, { role: Number((e.target as HTMLSelectElement).value) })} aria-label={`dataset ${i + 1} role`}>
              {ROLES.map((k) => (
                <option value={k}>{roleLabel(k)}</option>
              ))}
            </select>
            <button type="button" onClick={() => setRows(rows.filter((_, j) => j !== i))} aria-label="remove dataset">
              ×
            </button>
          </div>
        ))}
        <div class="eval-actions">
          <button type="button" onClick={() => setRows([...rows, { path: '', kind: EvalDataset_Kind.LOSS, role: EvalDataset_Role.HELD_OUT }])}>
            Add dataset
          </button>
          <button type="submit" class="primary" disabled={busy}>
            {busy ? 'Evaluating…' : 'Evaluate'}
          </button>
        </div>
      </form>
      {problem && <p class="error">{problem}</p>}
      {result && <EvaluateTable result={result} />}
    </section>
  );
}

function EvaluateTable({ result }: { result: EvaluateResponse }) {
  return (
    <div class="table-scroll">
      <p class="summary">
        Δ learning <b data-figure="delta-learning">{points(result.deltaLearning)}</b> · Δ forgetting{' '}
        <b data-figure="delta-forgetting">{points(result.deltaForgetting)}</b> <span class="muted small">(accuracy points against the base)</span>
      </p>
      <table class="eval-table">
        <thead>
          <tr>
            <th>dataset</th>
            <th>kind</th>
            <th>role</th>
            <th>accuracy</th>
            <th>base</th>
            <th>Δ accuracy</th>
            <th>loss</th>
            <th>Δ loss</th>
            <th class="wide">KL to base</th>
          </tr>
        </thead>
        <tbody>
          {result.results.map((r, i) => (
            <tr key={i}>
              <td class="ellipsis" title={r.name}>
                {r.name}
              </td>
              <td>{EvalDataset_Kind[r.kind]?.toLowerCase()}</td>
              <td>{roleLabel(r.role)}</td>
              <td>{fixed(r.accuracy)}</td>
              <td>{fixed(r.base?.accuracy)}</td>
              <td>{points(r.base?.accuracyDelta)}</td>
              <td>{fixed(r.loss)}</td>
              <td>{fixed(r.base?.lossDelta)}</td>
              <td class="wide">{fixed(r.base?.drift?.klToBase, 4)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
