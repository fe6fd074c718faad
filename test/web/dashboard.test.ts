// The dashboard in Debian's Chromium, against the real server's web port: the job list, live charts, compare,
// cancel, a server restarted mid-job, a wrong key. Screenshots of each view go to test-artifacts/dashboard/; the draw
// latency and the page's heap after a 10,000-step job are measured and written there too.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TuneJob_State, TuningService } from '../../src/gen/es/narrowtune/v1/tuning_service_pb.js';
import { type RunningServer, type ServerOptions, startServer } from '../../src/service/server.js';
import type { JobStore } from '../../src/store/job-store.js';
import { dashboardDir } from '../../src/web/dashboard-assets.js';
import { CHROMIUM, needs } from '../support/system-tools.js';
import { repeatData, tempDir, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';

const ARTIFACTS = new URL('../../test-artifacts/dashboard/', import.meta.url).pathname;
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'];
const SYNTHETIC_STEPS = 10_000;
/** Tight enough that the full job's drift reaches it in a few steps: the job view then shows the stop and the kept step. */
const FULL_KL_BUDGET = 0.009;

type Api = Client<typeof TuningService>;

let dir: string;
let base: string;
let data: string;
let serverOptions: ServerOptions;
let server: RunningServer;
let secret: string;
let api: Api;
let browser: Browser;
let page: Page;
const measurements: Record<string, unknown> = {};

function client(baseUrl: string, key: string): Api {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set('authorization', `Bearer ${key}`);
    return next(req);
  };
  return createClient(TuningService, createConnectTransport({ baseUrl, httpVersion: '1.1', interceptors: [bearer] }));
}

/** Starts a job on the tiny model; `drift` adds probes and validation, `budget` a KL-to-base limit. */
const tune = (a: Api, steps: number, preset: string, drift = false, budget?: number) =>
  a
    .startTune({
      baseModel: { source: { case: 'path', value: base } },
      trainingData: data,
      policy: { preset },
      hyperparameters: { steps, learningRate: 1e-2, batchSize: 4, seqLen: 32, checkpointEvery: 4 },
      ...(drift ? { probeData: data, validationData: data } : {}),
      ...(budget === undefined ? {} : { driftBudget: { maxKlToBase: budget } }),
    })
    .then((r) => r.job!.name);

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const resting = (a: Api, name: string) => until(`${name} to rest`, async () => [3, 4, 5].includes((await a.getTuneJob({ name })).job!.state) && name, 60_000);

/** The x (step) column of a chart on the page; [] before it exists. */
const chartSteps = (p: Page, chart: string): Promise<number[]> =>
  p.evaluate((id) => {
    const el = document.querySelector(`[data-chart="${id}"]`) as (Element & { uplot?: { data: number[][] } }) | null;
    return el?.uplot ? Array.from(el.uplot.data[0]!) : [];
  }, chart);

/** Each series' number of non-null points on a chart. */
const seriesPoints = (p: Page, chart: string): Promise<number[]> =>
  p.evaluate((id) => {
    const el = document.querySelector(`[data-chart="${id}"]`) as (Element & { uplot?: { data: (number | null)[][] } }) | null;
    return el?.uplot ? el.uplot.data.slice(1).map((ys) => ys.filter((y) => y != null).length) : [];
  }, chart);

async function newPage(key: string | null): Promise<Page> {
  const p = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  p.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await p.goto(`${server.webUrl}/`);
  if (key !== null) {
    await p.getByLabel('API key').fill(key);
    await p.getByRole('button', { name: 'Use key' }).click();
  }
  return p;
}

const shot = (p: Page, name: string) => p.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Insert-to-draw latency of the step events stored after `sinceMs`: each event's stored time against the first draw that covered it. */
async function drawLatencies(p: Page, store: JobStore, name: string, sinceMs: number): Promise<{ n: number; p50: number; p99: number }> {
  const draws = (await p.evaluate(() => (globalThis as unknown as { narrowtuneDraws: { job: string; sequence: number; atMs: number }[] }).narrowtuneDraws)).filter(
    (d) => d.job === name,
  );
  const latencies: number[] = [];
  for (const e of await store.readEvents(name.slice('jobs/'.length), 0)) {
    if (e.event.type !== 'step' || e.time < sinceMs) continue;
    const drawn = draws.find((d) => d.sequence >= e.sequence);
    if (drawn) latencies.push(drawn.atMs - e.time);
  }
  latencies.sort((a, b) => a - b);
  return { n: latencies.length, p50: Math.round(percentile(latencies, 0.5)), p99: Math.round(percentile(latencies, 0.99)) };
}

describe('the dashboard', needs('chromium'), () => {
  let full: string;
  let narrow: string;
  let live: string;

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    dir = await tempDir('nt-dashboard-');
    base = await tinyModel(dir, TINY_QWEN2);
    data = await repeatData(dir, 32);
    dashboardDir(); // builds the page now if its sources changed, rather than on the first request of a timed test
    serverOptions = { port: 0, dataDir: join(dir, 'server'), modelRoots: [dir], dataRoots: [dir], maxConcurrentJobs: 3, auth: 'api-key' };
    server = await startServer({ ...serverOptions, web: { port: 0 } });
    secret = (await server.store.keys.create({ tenant: 'lab', role: 'admin' })).secret;
    api = client(server.webUrl!, secret);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  afterAll(async () => {
    await writeFile(join(ARTIFACTS ?? '.', 'measurements.json'), `${JSON.stringify(measurements, null, 2)}\n`).catch(() => {});
    await browser?.close();
    await server?.shutdown();
    await rm(dir, { recursive: true, force: true });
  });

  it('lists jobs with their state, policy and base model, after asking for the key once', async () => {
    // Two short jobs that differ only in policy, for the job and compare views.
    page = await newPage(secret);
    await page.getByText('No jobs yet').waitFor();
    full = await tune(api, 24, 'full', true, FULL_KL_BUDGET);
    narrow = await tune(api, 24, 'mlp_gate_up', true);
    live = await tune(api, 100_000, 'mlp_gate_up');
    await page.locator(`tr[data-job="${live}"]`).waitFor();
    const rows = await page.$$eval('tr[data-job]', (trs) => trs.map((tr) => tr.textContent ?? ''));
    expect(rows).toHaveLength(3);
    expect(rows.join('\n')).toContain('mlp_gate_up');
    expect(rows.join('\n')).toContain('full');
    expect(rows.join('\n')).toContain('base');
    await shot(page, 'jobs');
  });

  it("a running job's loss chart gains points while it trains, each step once", async () => {
    await page.goto(`${server.webUrl}/#/jobs/${live.slice(5)}`);
    const watchFrom = Date.now();
    const first = await until('the first points', async () => {
      const xs = await chartSteps(page, 'loss');
      return xs.length >= 3 && xs.length;
    }, 60_000);
    const later = await until('more points', async () => {
      const xs = await chartSteps(page, 'loss');
      return xs.length >= first + 20 && xs;
    });
    expect(new Set(later).size).toBe(later.length);
    expect(later).toEqual(later.map((_, i) => i + 1));
    measurements.liveJob = { ...(await drawLatencies(page, server.store, live, watchFrom)), note: 'ms from the store insert of a step event to the draw that shows it, a tiny model training at its own pace' };
    await shot(page, 'job-running');
  });

  it('shows a finished job with drift charts, the budget limit and the stop; compares two jobs on the same charts', async () => {
    await resting(api, full);
    await resting(api, narrow);
    await page.goto(`${server.webUrl}/#/jobs/${full.slice(5)}`);
    await until('the drift charts', async () => (await chartSteps(page, 'kl-to-base')).length > 0);
    await shot(page, 'job');

    await page.goto(`${server.webUrl}/#/compare/${full.slice(5)},${narrow.slice(5)}`);
    // A job's line has one point per step it trained (the budget stops the full one early).
    const steps = await Promise.all([full, narrow].map(async (n) => new Set((await server.store.readEvents(n.slice(5), 0)).flatMap((e) => (e.event.type === 'step' ? [e.event.step] : []))).size));
    let seen: number[] = [];
    const points = await until(`both jobs on the loss chart (${steps} steps)`, async () => {
      const p = (seen = await seriesPoints(page, 'loss'));
      return p.length === 2 && p[0] === steps[0] && p[1] === steps[1] && p;
    }).catch((e: Error) => {
      throw new Error(`${e.message}; drawn: ${seen}`);
    });
    expect(points).toEqual(steps);
    expect((await seriesPoints(page, 'kl-to-base')).every((n) => n > 0)).toBe(true);
    await shot(page, 'compare');
  });

  it('evaluates a finished job against its base: the per-dataset table with Δ learning and Δ forgetting', async () => {
    await page.goto(`${server.webUrl}/#/jobs/${narrow.slice(5)}`);
    // The form starts with the job's training data as TARGET and its probe data as HELD_OUT.
    await page.getByRole('button', { name: 'Evaluate' }).click();
    const learning = await page.locator('[data-figure="delta-learning"]').textContent({ timeout: 60_000 });
    expect(learning).toMatch(/^[+-]\d+\.\d$/);
    expect(await page.locator('.eval-table tbody tr').count()).toBe(2);
    await page.locator('.evaluate').scrollIntoViewIfNeeded();
    await shot(page, 'evaluate');
  });

  it('a wrong key shows an error, not a blank page', async () => {
    const p = await newPage('nt_aaaaaaaaaaaa_wrongwrongwrongwrongwrongwrongwrongwrongwro');
    await p.getByText(/refused this key/).waitFor();
    expect(await p.getByLabel('API key').isVisible()).toBe(true);
    await shot(p, 'wrong-key');
    await p.context().close();
  });

  it('follows a job across a server restart: the same line, no step twice', async () => {
    await page.goto(`${server.webUrl}/#/jobs/${live.slice(5)}`);
    const before = (await until('the live job', async () => chartSteps(page, 'loss').then((xs) => xs.length > 0 && xs))).length;
    // The stream ends with the server; the page retries until the new one answers on the same port.
    await server.shutdown();
    server = await startServer({ ...serverOptions, web: { port: Number(new URL(server.webUrl!).port) } });
    api = client(server.webUrl!, secret);
    const xs = await until('the resumed job on the same line', async () => {
      const s = await chartSteps(page, 'loss');
      return s.length >= before + 10 && s;
    }, 60_000);
    expect(xs).toEqual(xs.map((_, i) => i + 1));
    await page.getByText(/resumed from step \d+/).first().waitFor();
    await shot(page, 'job-after-restart');
  });

  it('cancels a running job from its page', async () => {
    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.locator('.job-head .badge.state-cancelled').waitFor();
    expect((await api.getTuneJob({ name: live })).job!.state).toBe(TuneJob_State.CANCELLED);
  });

  it('measures: draw latency of a 10,000-step job written as fast as the store takes it, and the heap after it', async () => {
    const cdp = await page.context().newCDPSession(page);
    await page.goto(`${server.webUrl}/#/`);
    await cdp.send('HeapProfiler.collectGarbage');
    const idle = (await cdp.send('Runtime.getHeapUsage')).usedSize;

    const { job } = await server.store.createJob({ tenant: 'lab', spec: { options: {} as never, request: { baseModel: { path: base }, trainingData: data, policy: { preset: 'full' } } } });
    // This test writes the job's events itself: it holds the lease, so the server's runner never trains it.
    const lease = (await server.store.claimJob({ workerId: 'synthetic', leaseMs: 600_000 }))!;
    expect(lease.jobId).toBe(job.id);
    await server.store.updateProgress(lease, { totalSteps: SYNTHETIC_STEPS });
    const name = `jobs/${job.id}`;
    await page.goto(`${server.webUrl}/#/jobs/${job.id}`);
    await page.locator('[data-chart="loss"]').waitFor();
    const t0 = Date.now();
    await server.store.appendEvent(lease, { type: 'started', totalSteps: SYNTHETIC_STEPS, trainableTensors: [], trainableParameters: 1, provider: 'cpu', resumedFromStep: 0 });
    for (let s = 1; s <= SYNTHETIC_STEPS; s++) {
      const loss = 3 * Math.exp(-s / 2000) + 0.1 * Math.sin(s / 7);
      await server.store.appendEvent(lease, { type: 'step', step: s, totalSteps: SYNTHETIC_STEPS, loss, learningRate: 1e-4, gradNorm: 1, tokensPerSecond: 1000, elapsedSeconds: s / 100 });
      if (s % 100 === 0) {
        const f = { numberMass: 0.1, numberMassBase: 0.1, numberMassDelta: s / 1e6, klToBase: s / 1e5, top1Agreement: 1 - s / 1e5, heldoutLoss: 2, heldoutLossBase: 2, heldoutLossDelta: s / 1e5, classes: [] };
        await server.store.appendEvent(lease, { type: 'probe', step: s, ...f });
        await new Promise((r) => setImmediate(r)); // let the stream flush between bursts
      }
    }
    const writeMs = Date.now() - t0;
    await until('all 10,000 steps drawn', async () => (await chartSteps(page, 'loss')).length === SYNTHETIC_STEPS, 60_000);
    const drawnMs = Date.now() - t0;
    const latency = await drawLatencies(page, server.store, name, t0);
    await cdp.send('HeapProfiler.collectGarbage');
    const after = (await cdp.send('Runtime.getHeapUsage')).usedSize;
    await server.store.appendEvent(lease, { type: 'finished', state: 'SUCCEEDED' });
    await server.store.finish(lease, 'SUCCEEDED');
    measurements.syntheticJob = {
      steps: SYNTHETIC_STEPS,
      writeMs,
      allDrawnMs: drawnMs,
      latency,
      heapIdleMB: +(idle / 2 ** 20).toFixed(1),
      heapAfterMB: +(after / 2 ** 20).toFixed(1),
      note: 'latency: ms from each step event\'s store insert to the draw that shows it, while 10,000 steps (and 100 probes) are written as fast as the store takes them; heap: Runtime.getHeapUsage after a forced GC, on the job page with all steps drawn, against the job list before',
    };
    console.log('dashboard measurements', JSON.stringify(measurements, null, 2));
    await shot(page, 'job-10000-steps');
    expect(latency.n).toBeGreaterThan(SYNTHETIC_STEPS * 0.9);
    expect(after).toBeLessThan(64 * 2 ** 20);
  });
});
