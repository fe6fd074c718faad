import { describe, expect, it } from 'vitest';
import { OPS } from '../../src/graph/ops.js';
import { gradCheck, type GradCase } from './gradcheck.js';

function ropeTables(t: number, hd: number): { cos: number[]; sin: number[] } {
  const cos: number[] = [];
  const sin: number[] = [];
  for (let p = 0; p < t; p++) {
    for (let i = 0; i < hd; i++) {
      const freq = 1 / 10000 ** ((2 * (i % (hd / 2))) / hd);
      cos.push(Math.cos(p * freq));
      sin.push(Math.sin(p * freq));
    }
  }
  return { cos, sin };
}

const rope = ropeTables(3, 4);

/** One case per op at least; the last test fails when an op in the table has none. */
const CASES: GradCase[] = [
  { name: 'add broadcasts a bias', op: 'add', inputs: [{ shape: [2, 3, 4] }, { shape: [4] }] },
  { name: 'add broadcasts a middle axis', op: 'add', inputs: [{ shape: [2, 1, 4] }, { shape: [2, 3, 4] }] },
  { name: 'mul broadcasts', op: 'mul', inputs: [{ shape: [2, 3] }, { shape: [2, 1] }] },
  { name: 'linear with bias', op: 'linear', inputs: [{ shape: [3, 4] }, { shape: [5, 4] }, { shape: [5] }] },
  { name: 'linear without bias', op: 'linear', inputs: [{ shape: [2, 3] }, { shape: [4, 3] }] },
  { name: 'embedding with repeated ids', op: 'embedding', inputs: [{ shape: [6, 4] }, { shape: [5], ints: [1, 3, 1, 0, 5] }] },
  { name: 'reshape', op: 'reshape', inputs: [{ shape: [2, 6] }], attrs: { shape: [3, 4] } },
  { name: 'transpose', op: 'transpose', inputs: [{ shape: [2, 3, 4] }], attrs: { perm: [2, 0, 1] } },
  { name: 'rmsnorm over the last axis', op: 'rmsnorm', inputs: [{ shape: [2, 3, 8] }, { shape: [8] }], attrs: { eps: 1e-6 } },
  { name: 'swiglu', op: 'swiglu', inputs: [{ shape: [3, 5] }, { shape: [3, 5] }] },
  { name: 'rope', op: 'rope', inputs: [{ shape: [1, 2, 3, 4] }, { shape: [3, 4], fixed: rope.cos }, { shape: [3, 4], fixed: rope.sin }] },
  { name: 'attention, one kv head per query head', op: 'attention', inputs: [{ shape: [1, 2, 3, 4] }, { shape: [1, 2, 3, 4] }, { shape: [1, 2, 3, 4] }] },
  { name: 'attention with grouped kv heads', op: 'attention', inputs: [{ shape: [2, 4, 3, 2] }, { shape: [2, 2, 3, 2] }, { shape: [2, 2, 3, 2] }] },
  {
    name: 'cross_entropy ignores -100',
    op: 'cross_entropy',
    inputs: [{ shape: [4, 7] }, { shape: [4], ints: [2, -100, 6, 2] }, { shape: [], fixed: [0.37] }],
  },
];

describe('vector-Jacobian rules match central differences (float64)', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const r = await gradCheck(c);
      expect(r.checked).toBeGreaterThan(0);
      expect(r.maxRelError).toBeLessThan(1e-6);
    });
  }

  it('every op in the table has a gradient check', () => {
    const covered = new Set(CASES.map((c) => c.op));
    expect(Object.keys(OPS).filter((op) => !covered.has(op as never))).toEqual([]);
  });

  it('a wrong rule is caught', async () => {
    const broken = OPS.swiglu.vjp;
    OPS.swiglu.vjp = (g, ctx, dy) => broken(g, ctx, g.mul(dy, g.scalar(1.01, 'float64')));
    try {
      const r = await gradCheck({ name: 'broken swiglu', op: 'swiglu', inputs: [{ shape: [2, 3] }, { shape: [2, 3] }] });
      expect(r.maxRelError).toBeGreaterThan(1e-3);
    } finally {
      OPS.swiglu.vjp = broken;
    }
  });
});
