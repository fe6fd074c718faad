// A real job on the real server exports its metrics (no job id in attributes) and its spans.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  PeriodicExportingMetricReader,
  type DataPoint,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/service/server.js';
import { initTelemetry, METRIC, type Telemetry } from '../../src/telemetry/otel.js';
import { connect, type TestClient } from '../service/client.js';
import { repeatData, tempDir, TINY_QWEN2, tinyModel } from '../trainer/fixtures.js';
import { heldoutData } from './fixtures.js';

const NEVER_MS = 2 ** 30;
let dir: string;
let telemetry: Telemetry;
let server: RunningServer;
let client: TestClient;
const metrics = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter: metrics, exportIntervalMillis: NEVER_MS });
const spans = new InMemorySpanExporter();

beforeAll(async () => {
  dir = await tempDir('nt-otel-svc-');
  telemetry = await initTelemetry({ metricReaders: [reader], spanProcessors: [new SimpleSpanProcessor(spans)] });
  server = await startServer({ port: 0, dataDir: join(dir, 'data'), modelRoots: [dir], dataRoots: [dir], telemetry });
  client = connect(server.port);
});
afterAll(async () => {
  client?.close();
  await server?.shutdown();
  await telemetry?.shutdown();
  await rm(dir, { recursive: true, force: true });
});

it('a job exports loss, drift and job-state metrics by base model and policy, and train and RPC spans', async () => {
  const base = await tinyModel(dir, TINY_QWEN2, 'tiny-base');
  const job = await client.startTune({
    baseModel: { source: { $case: 'path', value: base } },
    trainingData: await repeatData(dir),
    probeData: await heldoutData(dir),
    policy: { preset: 'sa_proj' },
    hyperparameters: { steps: 4, learningRate: 1e-2, seqLen: 32, probeEvery: 2 },
  });
  await client.stream(job.name);

  await reader.forceFlush();
  const byName = new Map((metrics.getMetrics().at(-1)?.scopeMetrics ?? []).flatMap((s) => s.metrics).map((m) => [m.descriptor.name, m] as [string, MetricData]));
  for (const name of [METRIC.loss, METRIC.numberMass, METRIC.klToBase, METRIC.jobsFinished]) {
    const points = (byName.get(name)?.dataPoints ?? []) as DataPoint<unknown>[];
    expect(points.length, name).toBeGreaterThan(0);
    for (const p of points) {
      expect(p.attributes).toMatchObject({ 'narrowtune.base_model': 'tiny-base', 'narrowtune.policy': 'sa_proj' });
      expect(JSON.stringify(p.attributes)).not.toContain(job.name.slice(5));
    }
  }
  const names = spans.getFinishedSpans().map((s) => s.name);
  expect(names).toContain('narrowtune.job.train');
  expect(names.some((n) => n.includes('StartTune'))).toBe(true);
  const train = spans.getFinishedSpans().find((s) => s.name === 'narrowtune.job.train')!;
  expect(train.attributes['narrowtune.job_id']).toBe(job.name.slice(5));
});
