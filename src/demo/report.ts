// The demo's HTML report: one self-contained file (inline SVG, no scripts, no network) with the
// paper-style table and two charts — Δ learning against Δ forgetting, and held-out accuracy per stage.
import type { DemoResult } from './result.js';

const COLORS: Record<string, string> = { full: '#d62728', mlp: '#ff7f0e', mlp_gate_up: '#2ca02c', sa_proj: '#1f77b4', sa_proj_gate_up: '#9467bd' };
const W = 560;
const H = 360;
const PAD = 56;

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const pts = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}`;
const color = (policy: string) => COLORS[policy] ?? '#555';
/** Axis tick text; never "-0". */
const tick = (x: number) => (Math.abs(x) < 0.05 ? '0' : x.toFixed(Math.abs(x) < 10 ? 1 : 0));

function scale(lo: number, hi: number, from: number, to: number): (x: number) => number {
  const span = hi - lo || 1;
  return (x) => from + ((x - lo) / span) * (to - from);
}

/** A range that contains every value and zero, padded a little. */
function extent(values: number[]): [number, number] {
  const lo = Math.min(0, ...values);
  const hi = Math.max(0, ...values);
  const pad = (hi - lo) * 0.12 || 0.05;
  return [lo - pad, hi + pad];
}

function tradeoffChart(r: DemoResult): string {
  const [x0, x1] = extent(r.policies.map((p) => 100 * p.deltaLearning));
  const [y0, y1] = extent(r.policies.map((p) => 100 * p.deltaForgetting));
  const sx = scale(x0, x1, PAD, W - PAD / 2);
  const sy = scale(y0, y1, H - PAD, PAD / 2);
  const points = r.policies
    .map((p) => {
      const cx = sx(100 * p.deltaLearning);
      const cy = sy(100 * p.deltaForgetting);
      return (
        `<g class="point" data-policy="${esc(p.policy)}" data-learning="${pts(p.deltaLearning)}" data-forgetting="${pts(p.deltaForgetting)}">` +
        `<circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="7" fill="${color(p.policy)}"><title>${esc(p.policy)}: Δ learning ${pts(p.deltaLearning)}, Δ forgetting ${pts(p.deltaForgetting)}</title></circle>` +
        `<text x="${(cx + 10).toFixed(1)}" y="${(cy - 8).toFixed(1)}">${esc(p.policy)} (${pts(p.deltaLearning)}, ${pts(p.deltaForgetting)})</text></g>`
      );
    })
    .join('');
  return `<svg id="chart-tradeoff" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="Δ learning against Δ forgetting per policy">
  <line class="axis" x1="${PAD}" y1="${sy(0)}" x2="${W - PAD / 2}" y2="${sy(0)}"/><line class="axis" x1="${sx(0)}" y1="${PAD / 2}" x2="${sx(0)}" y2="${H - PAD}"/>
  <text class="label" x="${W / 2}" y="${H - 14}" text-anchor="middle">Δ learning (accuracy points on each new skill) →</text>
  <text class="label" transform="translate(16 ${H / 2}) rotate(-90)" text-anchor="middle">Δ held-out accuracy (points; down = forgetting)</text>
  <text class="tick" x="${PAD - 6}" y="${sy(y1) + 4}" text-anchor="end">${tick(y1)}</text><text class="tick" x="${PAD - 6}" y="${sy(y0) + 4}" text-anchor="end">${tick(y0)}</text>
  <text class="tick" x="${sx(x0)}" y="${H - PAD + 16}" text-anchor="middle">${tick(x0)}</text><text class="tick" x="${sx(x1)}" y="${H - PAD + 16}" text-anchor="middle">${tick(x1)}</text>
  ${points}
</svg>`;
}

function heldoutChart(r: DemoResult): string {
  const stages = ['base', ...r.targets];
  const baseHeldout = r.heldout.reduce((s, h) => s + r.baseAccuracy[h], 0) / r.heldout.length;
  const series = r.policies.map((p) => ({
    policy: p.policy,
    values: [baseHeldout, ...p.stages.map((s) => r.heldout.reduce((acc, h) => acc + s.accuracy[h], 0) / r.heldout.length)],
  }));
  const sx = scale(0, stages.length - 1, PAD, W - PAD);
  const sy = scale(0, 1, H - PAD, PAD / 2);
  const lines = series
    .map((s) => {
      const d = s.values.map((v, i) => `${i === 0 ? 'M' : 'L'}${sx(i).toFixed(1)},${sy(v).toFixed(1)}`).join(' ');
      const dots = s.values
        .map((v, i) => `<circle class="stage-point" data-policy="${esc(s.policy)}" data-stage="${esc(stages[i])}" data-accuracy="${(100 * v).toFixed(1)}" cx="${sx(i).toFixed(1)}" cy="${sy(v).toFixed(1)}" r="3.5" fill="${color(s.policy)}"><title>${esc(s.policy)} after ${esc(stages[i])}: ${(100 * v).toFixed(1)}%</title></circle>`)
        .join('');
      return `<g class="series" data-policy="${esc(s.policy)}"><path d="${d}" fill="none" stroke="${color(s.policy)}" stroke-width="2"/>${dots}</g>`;
    })
    .join('');
  const ticks = stages.map((st, i) => `<text class="tick" x="${sx(i).toFixed(1)}" y="${H - PAD + 18}" text-anchor="middle">${esc(st)}</text>`).join('');
  const yTicks = [0, 0.25, 0.5, 0.75, 1].map((v) => `<text class="tick" x="${PAD - 6}" y="${sy(v) + 4}" text-anchor="end">${100 * v}%</text><line class="grid" x1="${PAD}" x2="${W - PAD}" y1="${sy(v)}" y2="${sy(v)}"/>`).join('');
  const legend = r.policies.map((p, i) => `<g transform="translate(${PAD + 8 + i * 120} ${PAD / 2 + 4})"><rect width="12" height="12" fill="${color(p.policy)}"/><text x="16" y="11">${esc(p.policy)}</text></g>`).join('');
  return `<svg id="chart-heldout" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="Held-out accuracy after each stage">
  ${yTicks}${ticks}${lines}${legend}
  <text class="label" x="${W / 2}" y="${H - 10}" text-anchor="middle">after stage (target skills learned in order)</text>
</svg>`;
}

export function renderReport(r: DemoResult): string {
  const rows = r.policies
    .map(
      (p) =>
        `<tr data-policy="${esc(p.policy)}"><td><span class="swatch" style="background:${color(p.policy)}"></span>${esc(p.policy)}</td>` +
        `<td class="learning">${pts(p.deltaLearning)}</td><td class="forgetting">${pts(p.deltaForgetting)}</td><td class="drift">${p.numberMassDrift.toFixed(4)}</td></tr>`,
    )
    .join('\n');
  const stageRows = r.policies
    .flatMap((p) =>
      p.stages.map(
        (s) =>
          `<tr><td>${esc(p.policy)}</td><td>${esc(s.stage)}</td><td>${esc(s.job)}</td><td>${s.steps}</td><td>${s.finalLoss.toFixed(4)}</td>` +
          `<td>${(100 * s.accuracy[s.stage]).toFixed(1)}%</td><td>${pts(s.deltaForgetting)}</td><td>${s.numberMassDelta.toFixed(4)}</td><td>${s.probe ? s.probe.klToBase.toFixed(4) : '–'}</td></tr>`,
      ),
    )
    .join('\n');
  const base = Object.entries(r.baseAccuracy).map(([k, v]) => `${esc(k)} ${(100 * v).toFixed(0)}%`).join(', ');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>narrowtune demo — learning vs forgetting</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1180px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}table{border-collapse:collapse;margin:1rem 0}td,th{border-bottom:1px solid #ddd;padding:.3rem .7rem;text-align:right}
td:first-child,th:first-child{text-align:left}.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.4rem;border-radius:2px}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}figure{margin:0}svg{background:#fafafa;border:1px solid #e5e5e5}
svg text{font:12px system-ui,sans-serif;fill:#333}.axis{stroke:#888}.grid{stroke:#eee}.label{fill:#555}.tick{fill:#777}
small{color:#666}
</style></head><body>
<h1>narrowtune demo: learning new skills without forgetting</h1>
<p>A small ${esc(r.mode === 'quick' ? 'quick-mode' : 'full')} run (${r.steps} AdamW steps per stage, learning rate ${r.lr}). The base model was pretrained on held-out skills (${esc(r.heldout.join(', '))}). Under each policy it
then learned five new target skills one after another (${esc(r.targets.join(' → '))}), through narrowtune's gRPC API. Base accuracy: ${base}.</p>
<table id="summary"><thead><tr><th>policy</th><th>Δ learning (pts)</th><th>Δ held-out forgetting (pts)</th><th>number_mass drift</th></tr></thead>
<tbody>
${rows}
</tbody></table>
<p><small>Δ learning: the mean over stages of the accuracy on the stage's target skill right after that stage, minus the base model's accuracy on it.
Δ forgetting: the mean over stages of the mean held-out accuracy change from the base model; negative means the model forgot.
number_mass drift: the mean over stages of the change in probability mass on number tokens, on held-out prompts (bias drift).
Accuracy is greedy-decoded exact match. ${r.seconds.toFixed(0)} s on this machine.</small></p>
<div class="charts">
<figure><figcaption>Δ learning against Δ forgetting per policy: up and to the right is better</figcaption>${tradeoffChart(r)}</figure>
<figure><figcaption>Mean held-out accuracy after each stage</figcaption>${heldoutChart(r)}</figure>
</div>
<h2>Stages</h2>
<table id="stages"><thead><tr><th>policy</th><th>stage</th><th>job</th><th>steps</th><th>final loss</th><th>target accuracy</th><th>held-out Δ (pts)</th><th>number_mass Δ</th><th>kl_to_base (probe)</th></tr></thead>
<tbody>
${stageRows}
</tbody></table>
</body></html>
`;
}
