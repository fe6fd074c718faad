// What storing a frozen weight in float16 would cost at run time on the CPU provider: onnxruntime's CPU Gemm has no
// float16 kernel, so each use of such a weight is a Cast to float32 followed by the float32 Gemm. Times the
// 0.5B shape's matrices both ways (forward x·Wᵀ and backward dY·W), with the same thread count as `--threads`.
// `npx tsx bench/half-weights.ts [--threads N] [--runs N]`
import ort from 'onnxruntime-node';
import { GraphBuilder } from '../src/graph/graph-builder.js';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const threads = flag('--threads', 2);
const runs = flag('--runs', 20);
const TOKENS = 512;
// [out, in] of the frozen matrices of one mlp_gate_up layer of the 0.5B shape, and its tied embedding.
const WEIGHTS: [string, number, number][] = [
  ['q_proj / o_proj', 896, 896],
  ['down_proj', 896, 4864],
  ['embed_tokens (LM head, 1 row chunk of 103)', 151936, 896],
];

function toHalf(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 112;
  const mant = (u >>> 13) & 0x3ff;
  return exp <= 0 ? sign : sign | (exp << 10) | mant; // small normal values only: enough for N(0, 0.02) weights
}

function filled(n: number, f: (i: number) => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = f(i);
  return a;
}

async function time(build: (g: GraphBuilder) => void, feeds: Record<string, ort.Tensor>): Promise<number> {
  const g = new GraphBuilder('half', 'float32');
  build(g);
  const session = await ort.InferenceSession.create(g.toModel(), { intraOpNumThreads: threads, graphOptimizationLevel: 'all' });
  for (let i = 0; i < 3; i++) await session.run(feeds);
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await session.run(feeds);
  return (performance.now() - t0) / runs;
}

const lines = ['| matrix | rows | float32 fwd ms | float16+Cast fwd ms | float32 bwd ms | float16+Cast bwd ms | Cast alone ms |', '| --- | --- | --- | --- | --- | --- | --- |'];
for (const [name, out, inp] of WEIGHTS) {
  const rows = out > 100_000 ? 103 : TOKENS;
  const w32 = filled(out * inp, (i) => Math.sin(i) * 0.02);
  const w16 = new Uint16Array(w32.length);
  for (let i = 0; i < w32.length; i++) w16[i] = toHalf(w32[i]);
  const x = filled(rows * inp, (i) => Math.cos(i));
  const dy = filled(rows * out, (i) => Math.cos(i) * 0.01);
  const t32 = new ort.Tensor('float32', w32, [out, inp]);
  const t16 = new ort.Tensor('float16', w16, [out, inp]);
  const tx = new ort.Tensor('float32', x, [rows, inp]);
  const tdy = new ort.Tensor('float32', dy, [rows, out]);
  const fwd = (half: boolean) => (g: GraphBuilder) => {
    const w = g.input('w', half ? 'float16' : 'float32', [out, inp]);
    g.output(g.gemm(g.input('x', 'float32', [rows, inp]), half ? g.cast(w, 'float32') : w, null, { transB: true }), 'y');
  };
  const bwd = (half: boolean) => (g: GraphBuilder) => {
    const w = g.input('w', half ? 'float16' : 'float32', [out, inp]);
    g.output(g.gemm(g.input('dy', 'float32', [rows, out]), half ? g.cast(w, 'float32') : w, null), 'dx');
  };
  const castOnly = (g: GraphBuilder) => {
    g.output(g.reduceSum(g.cast(g.input('w', 'float16', [out, inp]), 'float32'), [0, 1]), 's');
  };
  const f32 = await time(fwd(false), { w: t32, x: tx });
  const f16 = await time(fwd(true), { w: t16, x: tx });
  const b32 = await time(bwd(false), { w: t32, dy: tdy });
  const b16 = await time(bwd(true), { w: t16, dy: tdy });
  const c = await time(castOnly, { w: t16 });
  lines.push(`| ${name} | ${rows} | ${f32.toFixed(2)} | ${f16.toFixed(2)} | ${b32.toFixed(2)} | ${b16.toFixed(2)} | ${c.toFixed(2)} |`);
}
process.stdout.write(`${lines.join('\n')}\nintra-op threads ${threads}, ${runs} runs each after 3 untimed\n`);
