// The quick demo end to end through gRPC, and its HTML report rendered in headless Chromium.
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_POLICIES, runDemo, summaryTable } from '../../src/demo/demo.js';
import type { DemoResult } from '../../src/demo/result.js';
import { SqliteJobStore } from '../../src/store/sqlite-job-store.js';
import { CHROMIUM, needs } from '../support/system-tools.js';
import { tempDir } from '../trainer/fixtures.js';

let dir: string;
let result: DemoResult;
const lines: string[] = [];

beforeAll(async () => {
  dir = await tempDir('nt-demo-');
  result = await runDemo({ quick: true, dataDir: join(dir, 'data'), report: join(dir, 'report.html'), log: (l) => lines.push(l) });
}, 600_000);
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('narrowtune demo --quick', () => {
  it('ran every stage of every policy as a job with a metric stream and an evaluation', async () => {
    expect(result.policies.map((p) => p.policy)).toEqual([...DEMO_POLICIES]);
    const store = SqliteJobStore.open(join(dir, 'data'));
    try {
      for (const p of result.policies) {
        expect(p.stages.map((s) => s.stage)).toEqual(result.targets);
        for (const s of p.stages) {
          const job = (await store.getJob(s.job.slice('jobs/'.length)))!;
          expect(job.state).toBe('SUCCEEDED');
          const events = await store.readEvents(job.id, 0);
          expect(events.length).toBe(s.events);
          expect(events.map((e) => e.event.type)).toEqual(expect.arrayContaining(['started', 'step', 'probe', 'finished']));
          expect(Object.keys(s.accuracy).sort()).toEqual([...result.targets, ...result.heldout].sort());
        }
      }
    } finally {
      await store.close();
    }
    expect(lines.some((l) => /number_mass .* kl_to_base/.test(l))).toBe(true);
    const table = summaryTable(result);
    for (const row of table.slice(1)) expect(lines).toContain(row);
  });

  it('the base model knows its held-out skills and not the targets', () => {
    for (const h of result.heldout) expect(result.baseAccuracy[h]).toBeGreaterThan(0.5);
    for (const t of result.targets) expect(result.baseAccuracy[t]).toBeLessThan(0.3);
  });

  it('writes the report and its data', async () => {
    expect(existsSync(result.reportPath)).toBe(true);
    const json = JSON.parse(await readFile(result.jsonPath, 'utf8')) as DemoResult;
    expect(json.policies.map((p) => p.deltaLearning)).toEqual(result.policies.map((p) => p.deltaLearning));
  });

  it('the report renders in headless Chromium, and its charts carry the table\'s numbers', needs('chromium'), async () => {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage();
      const requests: string[] = [];
      page.on('request', (r) => requests.push(r.url()));
      await page.goto(`file://${result.reportPath}`);
      expect(requests.filter((u) => !u.startsWith('file://'))).toEqual([]); // self-contained
      const table = await page.$$eval('#summary tbody tr', (rows) =>
        rows.map((r) => ({
          policy: r.getAttribute('data-policy'),
          learning: r.querySelector('.learning')!.textContent,
          forgetting: r.querySelector('.forgetting')!.textContent,
        })),
      );
      const points = await page.$$eval('#chart-tradeoff .point', (gs) =>
        gs.map((g) => {
          const box = g.querySelector('circle')!.getBoundingClientRect();
          return { policy: g.getAttribute('data-policy'), learning: g.getAttribute('data-learning'), forgetting: g.getAttribute('data-forgetting'), label: g.querySelector('text')!.textContent, w: box.width, h: box.height };
        }),
      );
      expect(points.map((p) => ({ policy: p.policy, learning: p.learning, forgetting: p.forgetting }))).toEqual(table);
      for (const p of points) {
        expect(p.w).toBeGreaterThan(0); // rendered, not just present
        expect(p.label).toContain(`(${p.learning}, ${p.forgetting})`);
      }
      const series = await page.$$eval('#chart-heldout .series', (gs) => gs.map((g) => ({ policy: g.getAttribute('data-policy'), points: g.querySelectorAll('circle').length, len: (g.querySelector('path') as SVGPathElement).getTotalLength() })));
      expect(series.map((s) => s.policy)).toEqual([...DEMO_POLICIES]);
      for (const s of series) {
        expect(s.points).toBe(1 + result.targets.length);
        expect(s.len).toBeGreaterThan(0);
      }
      const shot = await page.screenshot({ fullPage: true });
      expect(shot.byteLength).toBeGreaterThan(10_000);
    } finally {
      await browser.close();
    }
  });
});
