// The demo's HTML report: one self-contained file (inline SVG, no scripts, no network). At the top, the paper's
// claims and whether this run reproduced them; then every method's learning–forgetting curve on one chart, the
// matched-learning table, every run of the sweep, and every stage.
import { massDelta, points } from './findings.js';
import type { DemoResult, MethodResult } from './result.js';
import { lrText } from './tables.js';

const COLORS: Record<string, string> = {
  full: '#d62728',
  mlp: '#ff7f0e',
  mlp_gate_up: '#2ca02c',
  sa_proj: '#1f77b4',
  sa_proj_gate_up: '#9467bd',
  lora_mlp: '#8c564b',
  lwf_mlp: '#e377c2',
  wise_ft: '#555555',
};
/** The remedies are drawn dashed, the freezing policies solid. */
const DASHED = new Set(['lora_mlp', 'lwf_mlp', 'wise_ft']);
const color = (method: string) => COLORS[method] ?? '#333';

// The curve chart: the plot area, with room on the left and below for ticks and axis titles, and a legend column on
// the right outside the plot area, so that it never covers data.
const W = 860;
const H = 500;
const PLOT = { left: 70, top: 24, right: W - 200, bottom: H - 64 };
const LEGEND_X = PLOT.right + 24;
const MARGIN = 0.03;

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Round tick steps (1, 2 or 5 × 10^k) that give about `count` ticks over [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 6): { lo: number; hi: number; ticks: number[] } {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const first = Math.floor(lo / step + 1e-9) * step + 0; // + 0 turns -0 into 0
  const last = Math.ceil(hi / step - 1e-9) * step + 0;
  const ticks: number[] = [];
  for (let t = first; t <= last + step / 2; t += step) ticks.push(Math.abs(t) < step / 1e6 ? 0 : Number(t.toPrecision(12)));
  return { lo: first, hi: last, ticks };
}

function curveChart(r: DemoResult): string {
  const xs = r.methods.flatMap((m) => m.runs.map((run) => 100 * run.deltaLearning));
  const ys = r.methods.flatMap((m) => [...m.runs.map((run) => 100 * run.deltaForgetting), ...(m.matched ? [100 * m.matched.forgetting] : [])]);
  const x = niceTicks(Math.min(0, ...xs), Math.max(1, ...xs));
  const y = niceTicks(Math.min(-1, ...ys), Math.max(0, ...ys));
  // a margin inside the plot area, so that no point sits on its border
  const [x0, x1] = [x.lo - (x.hi - x.lo) * MARGIN, x.hi + (x.hi - x.lo) * MARGIN];
  const [y0, y1] = [y.lo - (y.hi - y.lo) * MARGIN, y.hi + (y.hi - y.lo) * MARGIN];
  const sx = (v: number) => PLOT.left + ((v - x0) / (x1 - x0)) * (PLOT.right - PLOT.left);
  const sy = (v: number) => PLOT.bottom - ((v - y0) / (y1 - y0)) * (PLOT.bottom - PLOT.top);
  const f = (v: number) => v.toFixed(1);
  const tickText = (v: number) => (v > 0 ? `+${v}` : v < 0 ? `−${-v}` : '0');

  const grid = [
    ...x.ticks.map((t) => `<line class="grid" x1="${f(sx(t))}" x2="${f(sx(t))}" y1="${PLOT.top}" y2="${PLOT.bottom}"/><text class="tick x-tick" x="${f(sx(t))}" y="${PLOT.bottom + 18}" text-anchor="middle">${tickText(t)}</text>`),
    ...y.ticks.map((t) => `<line class="grid" x1="${PLOT.left}" x2="${PLOT.right}" y1="${f(sy(t))}" y2="${f(sy(t))}"/><text class="tick y-tick" x="${PLOT.left - 8}" y="${f(sy(t) + 4)}" text-anchor="end">${tickText(t)}</text>`),
  ].join('');
  const zero = `<line class="axis" x1="${PLOT.left}" x2="${PLOT.right}" y1="${f(sy(0))}" y2="${f(sy(0))}"/><line class="axis" x1="${f(sx(0))}" x2="${f(sx(0))}" y1="${PLOT.top}" y2="${PLOT.bottom}"/>`;

  const series = r.methods
    .map((m) => {
      const pts = [{ lr: 0, learning: 0, forgetting: 0 }, ...m.runs.map((run) => ({ lr: run.lr, learning: run.deltaLearning, forgetting: run.deltaForgetting }))];
      const d = pts.map((p, i) => `${i === 0 ? 'M' : 'L'}${f(sx(100 * p.learning))},${f(sy(100 * p.forgetting))}`).join(' ');
      const dots = m.runs
        .map(
          (run) =>
            `<circle class="run" data-method="${esc(m.method)}" data-lr="${lrText(run.lr)}" data-learning="${points(run.deltaLearning)}" data-forgetting="${points(run.deltaForgetting)}" ` +
            `cx="${f(sx(100 * run.deltaLearning))}" cy="${f(sy(100 * run.deltaForgetting))}" r="4" fill="${color(m.method)}">` +
            `<title>${esc(m.method)} at lr ${lrText(run.lr)}: learning ${points(run.deltaLearning)}, held-out ${points(run.deltaForgetting)} points</title></circle>`,
        )
        .join('');
      const dash = DASHED.has(m.method) ? ' stroke-dasharray="6 4"' : '';
      return `<g class="series" data-method="${esc(m.method)}"><path d="${d}" fill="none" stroke="${color(m.method)}" stroke-width="2"${dash}/>${dots}</g>`;
    })
    .join('');

  let matched = '';
  if (r.matchedLevel !== null) {
    const mx = sx(100 * r.matchedLevel);
    const anchor = mx > (PLOT.left + PLOT.right) / 2 ? 'end' : 'start';
    const labelX = anchor === 'end' ? mx - 6 : mx + 6;
    const marks = r.methods
      .filter((m) => m.matched)
      .map((m) => `<circle class="matched-point" data-method="${esc(m.method)}" cx="${f(mx)}" cy="${f(sy(100 * m.matched!.forgetting))}" r="7" fill="none" stroke="${color(m.method)}" stroke-width="2"><title>${esc(m.method)} at matched learning: held-out ${points(m.matched!.forgetting)} points</title></circle>`)
      .join('');
    matched =
      `<line id="matched-line" class="matched" x1="${f(mx)}" x2="${f(mx)}" y1="${PLOT.top}" y2="${PLOT.bottom}"/>` +
      `<text id="matched-label" class="label" x="${f(labelX)}" y="${PLOT.top - 8}" text-anchor="${anchor}">matched learning ${points(r.matchedLevel)}</text>${marks}`;
  }

  const legend = r.methods
    .map((m, i) => {
      const dash = DASHED.has(m.method) ? ' stroke-dasharray="6 4"' : '';
      return `<g class="legend-item" data-method="${esc(m.method)}" transform="translate(${LEGEND_X} ${PLOT.top + 8 + i * 22})"><line x1="0" x2="24" y1="0" y2="0" stroke="${color(m.method)}" stroke-width="2.5"${dash}/><circle cx="12" cy="0" r="4" fill="${color(m.method)}"/><text x="32" y="4">${esc(m.method)}</text></g>`;
    })
    .join('');
  const legendNote = `<text class="tick" x="${LEGEND_X}" y="${PLOT.top + 16 + r.methods.length * 22}">○ at matched learning</text>`;

  return `<svg id="chart-curves" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="Learning against held-out change for each method over its learning-rate sweep">
  <rect class="plot" x="${PLOT.left}" y="${PLOT.top}" width="${PLOT.right - PLOT.left}" height="${PLOT.bottom - PLOT.top}"/>
  ${grid}${zero}${series}${matched}
  <g id="legend">${legend}${legendNote}</g>
  <text class="label" x="${(PLOT.left + PLOT.right) / 2}" y="${H - 16}" text-anchor="middle">Δ learning (accuracy points on the new skills) →</text>
  <text class="label" transform="translate(18 ${(PLOT.top + PLOT.bottom) / 2}) rotate(-90)" text-anchor="middle">Δ held-out accuracy (points; lower = more forgetting)</text>
</svg>`;
}

const VERDICT_MARK: Record<string, string> = { reproduced: '✓', 'not reproduced': '✗', 'not measured': '–' };

function summary(r: DemoResult): string {
  const count = (v: string) => r.findings.filter((x) => x.verdict === v).length;
  const level = r.matchedLevel === null ? 'no method learned anything, so no level could be matched' : `the matched level is ${points(r.matchedLevel)} points of learning`;
  const items = r.findings
    .map((x) => `<li class="finding" data-id="${esc(x.id)}" data-verdict="${esc(x.verdict)}"><span class="verdict v-${x.verdict.replace(' ', '-')}">${VERDICT_MARK[x.verdict]} ${esc(x.verdict)}</span> ${esc(x.claim)} <small>${esc(x.detail)}</small></li>`)
    .join('\n');
  return `<section id="summary">
<p>${r.methods.length} methods each learned ${r.targets.length === 1 ? `one new skill (${esc(r.targets[0])})` : `${r.targets.length} new skills in sequence (${esc(r.targets.join(' → '))})`} at ${r.lrs.length} learning rates
(${r.lrs.map(lrText).join(', ')}; ${r.steps} steps per skill), and ${level}. Of the paper's claims checked here, this run reproduced
${count('reproduced')} and did not reproduce ${count('not reproduced')}${count('not measured') > 0 ? `; ${count('not measured')} could not be measured` : ''}:</p>
<ul id="findings">
${items}
</ul></section>`;
}

function matchedRows(methods: MethodResult[]): string {
  return methods
    .map((m) => {
      const cells = m.matched
        ? `<td class="forgetting">${points(m.matched.forgetting)}</td><td class="drift">${massDelta(m.matched.drift)}</td><td>${m.matched.between.map(lrText).join('–')}</td>`
        : '<td class="forgetting">n/a</td><td class="drift">n/a</td><td>never reached</td>';
      const top = `<td class="at-reach">${m.atReach ? points(m.atReach.forgetting) : 'n/a'}</td>`;
      return `<tr data-method="${esc(m.method)}"><td><span class="swatch" style="background:${color(m.method)}"></span>${esc(m.method)}</td><td class="about">${esc(m.about)}</td><td class="reach">${points(m.reach)}</td>${cells}${top}</tr>`;
    })
    .join('\n');
}

export function renderReport(r: DemoResult): string {
  const runRows = r.methods
    .flatMap((m) =>
      m.runs.map(
        (run) =>
          `<tr data-method="${esc(m.method)}" data-lr="${lrText(run.lr)}"><td>${esc(m.method)}</td><td>${lrText(run.lr)}</td><td class="learning">${points(run.deltaLearning)}</td>` +
          `<td class="forgetting">${points(run.deltaForgetting)}</td><td class="drift">${massDelta(run.numberMassDrift)}</td></tr>`,
      ),
    )
    .join('\n');
  const stageRows = r.methods
    .flatMap((m) =>
      m.runs.flatMap((run) =>
        run.stages.map(
          (s) =>
            `<tr><td>${esc(m.method)}</td><td>${lrText(run.lr)}</td><td>${esc(s.stage)}</td><td>${esc(s.job)}</td><td>${s.steps}</td><td>${s.finalLoss.toFixed(4)}</td>` +
            `<td>${(100 * s.accuracy[s.stage]).toFixed(1)}%</td><td>${points(s.deltaForgetting)}</td><td>${massDelta(s.numberMassDelta)}</td>` +
            `<td>${s.probe ? massDelta(s.probe.numberMassDelta) : '–'}</td><td>${s.probe ? s.probe.klToBase.toFixed(4) : '–'}</td></tr>`,
        ),
      ),
    )
    .join('\n');
  const base = Object.entries(r.baseAccuracy).map(([k, v]) => `${esc(k)} ${(100 * v).toFixed(0)}%`).join(', ');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>narrowtune demo — forgetting at matched learning</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1180px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}table{border-collapse:collapse;margin:1rem 0}td,th{border-bottom:1px solid #ddd;padding:.3rem .7rem;text-align:right}
td:first-child,th:first-child,.about{text-align:left}td:first-child{white-space:nowrap}.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.4rem;border-radius:2px}
figure{margin:1rem 0}svg{background:#fff;border:1px solid #e5e5e5;max-width:100%;height:auto}
svg text{font:13px system-ui,sans-serif;fill:#333}.plot{fill:#fcfcfc;stroke:#ccc}.axis{stroke:#999}.grid{stroke:#ececec}.label{fill:#444}.tick{fill:#666}
.matched{stroke:#444;stroke-dasharray:3 3}#findings{padding-left:1.2rem}.finding{margin:.35rem 0}.verdict{font-weight:600;margin-right:.3rem}
.v-reproduced{color:#2a7d2a}.v-not-reproduced{color:#b22}.v-not-measured{color:#777}small{color:#666}
</style></head><body>
<h1>narrowtune demo: learning new skills without forgetting</h1>
${summary(r)}
<figure><figcaption>Each method's learning–forgetting curve over its learning-rate sweep, from the base model at (0, 0); higher at the same learning is better. The dashed vertical line is the matched learning level.</figcaption>${curveChart(r)}</figure>
<h2>Forgetting at matched learning</h2>
<table id="matched"><thead><tr><th>method</th><th class="about">what trains</th><th>best learning (pts)</th><th>Δ held-out at matched learning (pts)</th><th>number_mass drift there</th><th>between learning rates</th><th>Δ held-out at ${r.commonReach === null ? 'the common reach' : points(r.commonReach)} (pts)</th></tr></thead>
<tbody>
${matchedRows(r.methods)}
</tbody></table>
<p><small>A method's curve starts at the base model (no learning, no forgetting) and visits its runs in order of learning rate; it is read at the
matched level by linear interpolation between the two points around it, on the first segment that reaches it. The matched level is half of the common reach: the largest learning that
every method reaches, leaving out methods whose best learning is under a quarter of the best method's. Halfway up, every curve is read between
two measured points; at the common reach itself (last column) the weakest method is read at its largest learning rate, where forgetting often
saturates for every method. A method whose curve never reaches a level shows n/a (never extrapolated).</small></p>
<h2>Every run</h2>
<table id="runs"><thead><tr><th>method</th><th>lr</th><th>Δ learning (pts)</th><th>Δ held-out forgetting (pts)</th><th>number_mass drift</th></tr></thead>
<tbody>
${runRows}
</tbody></table>
<p><small>Δ learning: the mean over stages of the accuracy on the stage's target skill right after that stage, minus the base model's accuracy on it.
Δ forgetting: the mean over stages of the mean held-out accuracy change from the base model; negative means the model forgot.
number_mass drift: the mean over stages of the change in probability mass on number tokens, on held-out prompts, against the base model (bias drift).
Accuracy is greedy-decoded exact match. Held-out skills: ${esc(r.heldout.join(', '))}. Base accuracy: ${base}. ${r.seconds.toFixed(0)} s on this machine.</small></p>
<h2>Stages</h2>
<table id="stages"><thead><tr><th>method</th><th>lr</th><th>stage</th><th>job</th><th>steps</th><th>final loss</th><th>target accuracy</th><th>held-out Δ (pts)</th><th>number_mass Δ</th><th>live number_mass Δ (probe)</th><th>kl_to_base (probe)</th></tr></thead>
<tbody>
${stageRows}
</tbody></table>
<p><small>The live figures are the job's last probe, against the model the stage started from; the others are the evaluation after the stage, against the base model.</small></p>
</body></html>
`;
}
