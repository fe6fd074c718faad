// The demo's HTML report in headless Chromium, from a made-up sweep: its chart carries the tables' numbers, and
// nothing is cut off at the chart's edges or covered by the legend.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findings } from '../../src/demo/findings.js';
import { matchedLevel, reach, readAt } from '../../src/demo/matched-learning.js';
import { DEMO_METHODS } from '../../src/demo/methods.js';
import { niceTicks, renderReport } from '../../src/demo/report.js';
import type { DemoResult, MethodResult, RunResult } from '../../src/demo/result.js';
import { CHROMIUM, needs } from '../support/system-tools.js';
import { tempDir } from '../trainer/fixtures.js';

const LRS = [3e-4, 1e-3, 3e-3];

/** A sweep shaped like the demo's: learning grows with the rate, forgetting with it; one method barely learns. */
function madeUpResult(reportPath: string): DemoResult {
  const methods: MethodResult[] = DEMO_METHODS.map((m, i) => {
    const runs: RunResult[] = LRS.map((lr, j) => {
      const learning = m.name === 'lwf_mlp' ? 0.04 * j : Math.min(1, (0.1 + 0.05 * i) * (j + 1) ** 1.3);
      const forgetting = -Math.min(1, learning * (0.2 + 0.12 * i) * (j + 1) ** 0.5);
      return { method: m.name, lr, stages: [], deltaLearning: learning, deltaForgetting: forgetting, numberMassDrift: 0.004 * i * (j + 1) };
    });
    return { method: m.name, about: m.about, runs, reach: 0, matched: null, atReach: null };
  });
  const curve = (m: MethodResult) => m.runs.map((r) => ({ lr: r.lr, learning: r.deltaLearning, forgetting: r.deltaForgetting, drift: r.numberMassDrift }));
  const level = matchedLevel(methods.map(curve));
  for (const m of methods) {
    m.reach = reach(curve(m));
    m.matched = readAt(curve(m), level!);
    m.atReach = readAt(curve(m), 2 * level!);
  }
  return {
    mode: 'quick',
    steps: 60,
    lrs: LRS,
    baseModel: '/models/base',
    baseAccuracy: { count: 0, capital: 1 },
    targets: ['count'],
    heldout: ['capital'],
    methods,
    matchedLevel: level,
    commonReach: level === null ? null : 2 * level,
    findings: findings(methods, level, ['count']),
    seconds: 1,
    reportPath,
    jsonPath: reportPath.replace(/html$/, 'json'),
  };
}

describe('niceTicks', () => {
  it('covers the range with round steps, zero included', () => {
    expect(niceTicks(-98.3, 0)).toEqual({ lo: -100, hi: 0, ticks: [-100, -80, -60, -40, -20, 0] });
    expect(niceTicks(0, 54.2).ticks).toEqual([0, 10, 20, 30, 40, 50, 60]);
    expect(niceTicks(-3, 1).ticks).toEqual([-3, -2, -1, 0, 1]);
    expect(niceTicks(-0.7, 0.3).ticks).toEqual([-0.8, -0.6, -0.4, -0.2, 0, 0.2, 0.4]);
  });
});

describe('the report in Chromium', () => {
  let browser: Browser;
  let result: DemoResult;
  let dir: string;

  beforeAll(async () => {
    dir = await tempDir('nt-report-');
    result = madeUpResult(join(dir, 'report.html'));
    await writeFile(result.reportPath, renderReport(result));
  });
  afterAll(async () => {
    await browser?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('draws every run where the tables put it, with readable ticks and nothing cut off or covered', needs('chromium'), async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`file://${result.reportPath}`);
    expect(requests.filter((u) => !u.startsWith('file://'))).toEqual([]); // self-contained

    const runs = await page.$$eval('#runs tbody tr', (rows) => rows.map((r) => [r.getAttribute('data-method'), r.getAttribute('data-lr'), r.querySelector('.learning')!.textContent, r.querySelector('.forgetting')!.textContent]));
    const dots = await page.$$eval('#chart-curves circle.run', (cs) => cs.map((c) => [c.getAttribute('data-method'), c.getAttribute('data-lr'), c.getAttribute('data-learning'), c.getAttribute('data-forgetting')]));
    expect(dots).toEqual(runs);
    expect(dots).toHaveLength(DEMO_METHODS.length * LRS.length);

    const layout = await page.$eval('#chart-curves', (svg) => {
      const box = (e: Element) => {
        const r = e.getBoundingClientRect();
        return { left: r.left, right: r.right, top: r.top, bottom: r.bottom, text: e.textContent ?? '' };
      };
      return {
        svg: box(svg),
        plot: box(svg.querySelector('rect.plot')!),
        legend: box(svg.querySelector('#legend')!),
        texts: [...svg.querySelectorAll('text')].map(box),
        xTicks: [...svg.querySelectorAll('text.x-tick')].map(box),
        yTicks: [...svg.querySelectorAll('text.y-tick')].map(box),
        marks: [...svg.querySelectorAll('circle.run, circle.matched-point')].map(box),
      };
    });
    for (const t of layout.texts) {
      expect(t.left, t.text).toBeGreaterThanOrEqual(layout.svg.left);
      expect(t.right, t.text).toBeLessThanOrEqual(layout.svg.right);
      expect(t.top, t.text).toBeGreaterThanOrEqual(layout.svg.top);
      expect(t.bottom, t.text).toBeLessThanOrEqual(layout.svg.bottom);
    }
    const overlap = (a: typeof layout.svg, b: typeof layout.svg) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
    expect(overlap(layout.legend, layout.plot)).toBe(false);
    for (const m of layout.marks) expect(overlap(m, layout.legend)).toBe(false);
    expect(layout.xTicks.length).toBeGreaterThanOrEqual(4);
    expect(layout.yTicks.length).toBeGreaterThanOrEqual(4);
    for (const ticks of [layout.xTicks, layout.yTicks]) {
      for (let i = 1; i < ticks.length; i++) expect(overlap(ticks[i - 1], ticks[i]), `${ticks[i - 1].text} / ${ticks[i].text}`).toBe(false);
    }

    // the matched-learning table: n/a for the method that never reaches the level, and one ring per other method
    const matched = await page.$$eval('#matched tbody tr', (rows) => rows.map((r) => [r.getAttribute('data-method'), r.querySelector('.forgetting')!.textContent]));
    expect(matched.find(([m]) => m === 'lwf_mlp')?.[1]).toBe('n/a');
    expect(await page.locator('#chart-curves circle.matched-point').count()).toBe(result.methods.filter((m) => m.matched).length);

    // the summary states each finding with its verdict
    const listed = await page.$$eval('#findings .finding', (li) => li.map((l) => [l.getAttribute('data-id'), l.getAttribute('data-verdict')]));
    expect(listed).toEqual(result.findings.map((f) => [f.id, f.verdict]));
    expect(listed.length).toBeGreaterThanOrEqual(4);

    const shot = await page.screenshot({ fullPage: true, path: join(dir, 'report.png') });
    expect(shot.byteLength).toBeGreaterThan(10_000);
  });
});
