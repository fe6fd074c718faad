// `--profile`: one profiled row process per configuration and policy, and the aggregation of onnxruntime's
// chrome-trace over the last step by op type, node, phase, execution provider and emitting rule.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { benchTuneOptions, type BenchSettings } from './configs.js';
import type { NodeSources } from './node-sources.js';
import { inRowProcess, type ProfileMeasurement } from './row-process.js';
import { prepare } from './workload.js';

export interface ProfileEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string; provider?: string; output_type_shape?: unknown };
}

export interface ProfileSummary {
  runMs: number;
  kernelMs: number;
  byOp: { op: string; ms: number; pct: number; count: number }[];
  byNode: { node: string; op: string; source: string; ms: number; pct: number; shape: string }[];
  byPhase: { phase: string; ms: number; pct: number }[];
  /** By execution provider: on a GPU, which share of the step fell back to the CPU. */
  byProvider: { provider: string; ms: number; pct: number; count: number }[];
  /** By the differentiable op (ops.ts rule) whose forward builder or VJP rule emitted the node. */
  bySource: { source: string; ms: number; pct: number; count: number }[];
}

function sourceOf(node: string, sources: NodeSources | null): string {
  const m = /^n(\d+)_/.exec(node);
  if (!m) return 'onnxruntime-expanded (cross-entropy function body)';
  return sources?.[Number(m[1])] ?? 'unknown';
}

/** Aggregates onnxruntime's chrome-trace JSON over the last `model_run` in it. */
export function summariseProfile(events: ProfileEvent[], sources: NodeSources | null): ProfileSummary {
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
  const last = runs[runs.length - 1];
  const inRun = (e: ProfileEvent) => !last || (e.ts >= last.ts && e.ts <= last.ts + last.dur);
  const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && inRun(e));
  const kernelUs = kernels.reduce((s, e) => s + e.dur, 0);
  const runUs = last?.dur ?? kernelUs;
  const pct = (us: number) => (100 * us) / runUs;
  const add = (m: Map<string, { us: number; count: number }>, k: string, us: number) => {
    const o = m.get(k) ?? { us: 0, count: 0 };
    m.set(k, { us: o.us + us, count: o.count + 1 });
  };
  const ops = new Map<string, { us: number; count: number }>();
  const bySource = new Map<string, { us: number; count: number }>();
  const phases = new Map<string, { us: number; count: number }>();
  const providers = new Map<string, { us: number; count: number }>();
  const nodes = kernels.map((e) => {
    const node = e.name.replace(/_kernel_time$/, '');
    const op = e.args?.op_name ?? '?';
    const source = sourceOf(node, sources);
    add(ops, op, e.dur);
    add(providers, e.args?.provider ?? '?', e.dur);
    add(bySource, source, e.dur);
    const phase = !sources
      ? 'kernels (phases need the node sources of a profiling run)'
      : source.startsWith('fwd') || source.startsWith('onnxruntime') ? 'forward' : source.startsWith('bwd') ? 'backward' : source === 'update' ? 'clip + optimizer + outputs' : 'other';
    add(phases, phase, e.dur);
    return { node, op, source, ms: e.dur / 1000, pct: pct(e.dur), shape: JSON.stringify(e.args?.output_type_shape ?? '') };
  });
  phases.set('outside kernels (executor)', { us: runUs - kernelUs, count: 0 });
  const list = (m: Map<string, { us: number; count: number }>) => [...m].map(([k, o]) => ({ k, ms: o.us / 1000, pct: pct(o.us), count: o.count })).sort((x, y) => y.ms - x.ms);
  return {
    runMs: runUs / 1000,
    kernelMs: kernelUs / 1000,
    byOp: list(ops).map(({ k, ...r }) => ({ op: k, ...r })),
    byNode: nodes.sort((x, y) => y.ms - x.ms),
    byPhase: list(phases).map(({ k, ms, pct: p }) => ({ phase: k, ms, pct: p })),
    byProvider: list(providers).map(({ k, ...r }) => ({ provider: k, ...r })),
    bySource: list(bySource).map(({ k, ...r }) => ({ source: k, ...r })),
  };
}

export function formatProfile(title: string, s: ProfileSummary, top = 25): string {
  const out = [`## ${title}: session.run ${s.runMs.toFixed(0)} ms (kernels ${s.kernelMs.toFixed(0)} ms)`, '', '| phase | ms | % |', '| --- | --- | --- |'];
  for (const p of s.byPhase) out.push(`| ${p.phase} | ${p.ms.toFixed(1)} | ${p.pct.toFixed(1)} |`);
  out.push('', '| execution provider | nodes | ms | % |', '| --- | --- | --- | --- |');
  for (const p of s.byProvider) out.push(`| ${p.provider} | ${p.count} | ${p.ms.toFixed(1)} | ${p.pct.toFixed(1)} |`);
  out.push('', '| op type | nodes | ms | % |', '| --- | --- | --- | --- |');
  for (const o of s.byOp.slice(0, top)) out.push(`| ${o.op} | ${o.count} | ${o.ms.toFixed(1)} | ${o.pct.toFixed(1)} |`);
  out.push('', '| emitted by | nodes | ms | % |', '| --- | --- | --- | --- |');
  for (const o of s.bySource.slice(0, top)) out.push(`| ${o.source} | ${o.count} | ${o.ms.toFixed(1)} | ${o.pct.toFixed(1)} |`);
  out.push('', '| node | op | emitted by | ms | % | output shape |', '| --- | --- | --- | --- | --- | --- |');
  for (const n of s.byNode.slice(0, top)) out.push(`| ${n.node} | ${n.op} | ${n.source} | ${n.ms.toFixed(1)} | ${n.pct.toFixed(1)} | ${n.shape.slice(0, 80)} |`);
  return out.join('\n');
}

export async function profileRows(a: BenchSettings, work: string): Promise<void> {
  const dir = resolve(a.profile!);
  await mkdir(dir, { recursive: true });
  for (const c of a.configs) {
    const { model, data } = await prepare(c, a.cacheDir, c.batch * 4);
    for (const policy of a.policies) {
      const prefix = join(dir, `${c.name}-${policy}`);
      process.stderr.write(`bench: profiling ${c.name} ${policy}…\n`);
      const r = await inRowProcess<ProfileMeasurement>({
        type: 'profile',
        options: benchTuneOptions(model, data, join(work, 'unused'), c, policy, a.warmup + 1, a),
        prefix,
        runs: a.warmup + 1,
        threads: a.profileThreads,
      }, a.rowTimeout);
      const summary = summariseProfile(JSON.parse(await readFile(r.file, 'utf8')) as ProfileEvent[], r.sources);
      const text = formatProfile(`${c.name} ${policy}`, summary);
      await writeFile(`${prefix}-summary.md`, `${text}\n`);
      await writeFile(`${prefix}-summary.json`, JSON.stringify({ ...summary, byNode: summary.byNode.slice(0, 200), stepMs: r.stepMs, trace: r.file }, null, 2));
      process.stdout.write(`${text}\n\nsession.run per step (ms, profiler on): ${r.stepMs.map((x) => x.toFixed(0)).join(', ')}; trace ${r.file}\n\n`);
    }
  }
}
