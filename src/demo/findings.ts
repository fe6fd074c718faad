// The paper's claims (Zhu et al., arXiv 2510.08564) checked against one demo run, in plain words computed from its
// numbers: the report's summary and the console's closing lines.
import type { Finding, MethodResult } from './result.js';

/** "Learns about as much": the best learning of the sweep within this share of full tuning's. */
export const AS_MUCH_SHARE = 0.9;
/**
 * Differences in forgetting at matched learning within this many accuracy points (as a fraction) count as a match,
 * not as less: a few eval examples' worth, since held-out accuracy is measured on a few dozen examples per skill.
 */
export const MATCH_TOLERANCE = 0.02;
/** number_mass drift under this (in probability mass) for both methods: the run's targets did not move it. */
export const DRIFT_FLOOR = 0.001;
const REMEDIES = ['lora_mlp', 'lwf_mlp', 'wise_ft'];

export const points = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(1)}`;
/** A number-mass change to 4 places; a value that rounds to zero prints unsigned, never as -0.0000. */
export const massDelta = (x: number) => (Math.abs(x) < 5e-5 ? '0.0000' : x.toFixed(4));

function verdict(ok: boolean): Finding['verdict'] {
  return ok ? 'reproduced' : 'not reproduced';
}

export function findings(methods: readonly MethodResult[], level: number | null, targets: readonly string[]): Finding[] {
  const m = (name: string) => methods.find((x) => x.method === name);
  const full = m('full');
  const out: Finding[] = [];
  const at = level === null ? '' : ` at ${points(level)} points of learning`;

  const gateUp = m('mlp_gate_up');
  if (full && gateUp) {
    out.push({
      id: 'gate-up-learns',
      claim: 'Tuning only the MLP gate and up projections learns about as much as full tuning.',
      verdict: verdict(gateUp.reach >= AS_MUCH_SHARE * full.reach),
      detail: `Best learning in the sweep: mlp_gate_up ${points(gateUp.reach)}, full ${points(full.reach)} points.`,
    });
  }
  for (const name of ['mlp_gate_up', 'sa_proj']) {
    const x = m(name);
    if (!full || !x) continue;
    const claim = `At equal learning, ${name} forgets less than full tuning.`;
    if (!x.matched || !full.matched) {
      out.push({ id: `${name}-forgets-less`, claim, verdict: 'not measured', detail: `${!x.matched ? name : 'full'} never reached the matched learning level${at}.` });
      continue;
    }
    out.push({
      id: `${name}-forgets-less`,
      claim,
      verdict: verdict(x.matched.forgetting > full.matched.forgetting + MATCH_TOLERANCE),
      detail: `Held-out change${at}: ${name} ${points(x.matched.forgetting)}, full ${points(full.matched.forgetting)} points (less means by more than ${(100 * MATCH_TOLERANCE).toFixed(0)}).`,
    });
  }
  if (full?.matched && gateUp?.matched) {
    const [a, b] = [gateUp.matched.drift, full.matched.drift];
    const flat = Math.max(Math.abs(a), Math.abs(b)) < DRIFT_FLOOR;
    out.push({
      id: 'gate-up-drift',
      claim: 'Freezing the down projection keeps the output distribution from drifting: mlp_gate_up shifts number-token mass less than full tuning.',
      verdict: flat ? 'not measured' : verdict(Math.abs(a) < Math.abs(b)),
      detail:
        `number_mass drift on held-out prompts${at}: mlp_gate_up ${a.toFixed(4)}, full ${b.toFixed(4)}` +
        (flat ? ` — both under ${DRIFT_FLOOR}: the targets of this run (${targets.join(', ')}) did not move number-token mass.` : '.'),
    });
  }
  const selective = ['mlp_gate_up', 'sa_proj'].flatMap((n) => (m(n)?.matched ? [m(n)!] : []));
  const remedies = REMEDIES.flatMap((n) => (m(n) ? [m(n)!] : []));
  if (selective.length > 0 && remedies.length > 0) {
    const best = selective.reduce((a, b) => (b.matched!.forgetting > a.matched!.forgetting ? b : a));
    const measured = remedies.filter((r) => r.matched);
    const beaten = measured.filter((r) => best.matched!.forgetting >= r.matched!.forgetting - MATCH_TOLERANCE);
    const unread = remedies.filter((r) => !r.matched).map((r) => r.method);
    out.push({
      id: 'selective-vs-remedies',
      claim: 'The selective recipes (sa_proj, mlp_gate_up) match or beat LoRA, LwF and WiSE-FT at equal learning.',
      verdict: measured.length === 0 ? 'not measured' : verdict(beaten.length === measured.length),
      detail:
        `Held-out change${at}: ${best.method} ${points(best.matched!.forgetting)}; ` +
        measured.map((r) => `${r.method} ${points(r.matched!.forgetting)}`).join(', ') +
        (unread.length > 0 ? `; ${unread.join(', ')} never reached the level` : '') +
        ` (“match” is within ${(100 * MATCH_TOLERANCE).toFixed(0)} points).`,
    });
  }
  return out;
}
