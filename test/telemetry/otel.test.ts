// OpenTelemetry export: env resolution, job metrics and spans, the Prometheus endpoint, gRPC server spans.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  PeriodicExportingMetricReader,
  type DataPoint,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { HealthImplementation, service as healthService } from 'grpc-health-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TuningServiceService } from '../../src/gen/narrowtune/v1/tuning_service.js';
import { startServer } from '../../src/service/server.js';
import { initTelemetry, METRIC, type Telemetry } from '../../src/telemetry/otel.js';
import { readOtelEnv } from '../../src/telemetry/otel-env.js';
import { IGNORED_RPC_METHODS } from '../../src/telemetry/otel-grpc.js';
import { connect } from '../service/client.js';

const OTEL_ENV = [
  'OTEL_SDK_DISABLED',
  'OTEL_EXPORTER_OTLP_ENDPOINT',
  'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
  'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT',
  'OTEL_TRACES_EXPORTER',
  'OTEL_METRICS_EXPORTER',
  'OTEL_SERVICE_NAME',
];
// Long enough never to fire during a test: exports happen on forceFlush only.
const NEVER_MS = 3_600_000;
const JOB = { baseModel: '/srv/models/qwen3-0.6b/', policy: 'freeze-down' };
const JOB_ID = 'j-0123456789';
const STEP = { loss: 2.5, learningRate: 3e-4, gradNorm: 0.75, tokensPerSecond: 1234, stepSeconds: 0.2 };
const PROBE = {
  numberMass: 0.3,
  numberMassDelta: 0.2,
  klToBase: 0.05,
  top1Agreement: 0.9,
  heldoutLossDelta: 0.02,
  classes: [
    { name: 'digit', mass: 0.25, massBase: 0.2, delta: 0.05 },
    { name: 'word', mass: 0.6, massBase: 0.7, delta: -0.1 },
  ],
};

let telemetry: Telemetry | null = null;

beforeEach(() => {
  for (const name of OTEL_ENV) vi.stubEnv(name, undefined);
});
afterEach(async () => {
  await telemetry?.shutdown();
  telemetry = null;
  vi.unstubAllEnvs();
});

function inMemory() {
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: NEVER_MS });
  const spanExporter = new InMemorySpanExporter();
  return { metricExporter, reader, spanExporter, processor: new SimpleSpanProcessor(spanExporter) };
}

async function collected(reader: PeriodicExportingMetricReader, exporter: InMemoryMetricExporter): Promise<Map<string, MetricData>> {
  await reader.forceFlush();
  const latest = exporter.getMetrics().at(-1);
  return new Map((latest?.scopeMetrics ?? []).flatMap((s) => s.metrics).map((m) => [m.descriptor.name, m]));
}

function points(m: MetricData | undefined): DataPoint<unknown>[] {
  return (m?.dataPoints ?? []) as DataPoint<unknown>[];
}

const EXPECTED_ATTRS = { 'narrowtune.base_model': 'qwen3-0.6b', 'narrowtune.policy': 'freeze-down' };

describe('readOtelEnv', () => {
  it('is off with no OTEL variables, on for an OTLP endpoint, off again for exporter "none"', () => {
    expect(readOtelEnv({})).toEqual({ disabled: false, traces: false, metrics: false, serviceName: 'narrowtune' });
    expect(readOtelEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toMatchObject({ traces: true, metrics: true });
    expect(readOtelEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_METRICS_EXPORTER: 'none' })).toMatchObject({ traces: true, metrics: false });
    expect(readOtelEnv({ OTEL_TRACES_EXPORTER: 'console' })).toMatchObject({ traces: true, metrics: false });
    expect(readOtelEnv({ OTEL_METRICS_EXPORTER: 'prometheus' })).toMatchObject({ traces: false, metrics: true });
    expect(readOtelEnv({ OTEL_SDK_DISABLED: 'TRUE', OTEL_SERVICE_NAME: 'nt-prod' })).toMatchObject({ disabled: true, serviceName: 'nt-prod' });
  });
});

describe('disabled telemetry', () => {
  it('is a no-op without configuration', async () => {
    telemetry = await initTelemetry({});
    expect(telemetry.enabled).toBe(false);
    expect(telemetry.prometheusPort).toBeNull();
    telemetry.recordStep(JOB, STEP);
    telemetry.recordProbe(JOB, PROBE);
    telemetry.recordJobState(JOB, 'SUCCEEDED');
    await expect(telemetry.jobPhase('train', { ...JOB, jobId: JOB_ID }, async () => 42)).resolves.toBe(42);
    await telemetry.shutdown();
  });

  it('OTEL_SDK_DISABLED=true wins over injected exporters and records nothing', async () => {
    vi.stubEnv('OTEL_SDK_DISABLED', 'true');
    const m = inMemory();
    telemetry = await initTelemetry({ metricReaders: [m.reader], spanProcessors: [m.processor], prometheusPort: 0 });
    expect(telemetry.enabled).toBe(false);
    telemetry.recordStep(JOB, STEP);
    await telemetry.jobPhase('load', JOB, async () => undefined);
    expect(m.metricExporter.getMetrics()).toEqual([]);
    expect(m.spanExporter.getFinishedSpans()).toEqual([]);
  });
});

describe('job metrics and spans', () => {
  it('recordStep and recordProbe set the narrowtune.* instruments, attributed by model basename and policy only', async () => {
    const m = inMemory();
    telemetry = await initTelemetry({ metricReaders: [m.reader] });
    expect(telemetry.enabled).toBe(true);
    // A caller handing over its whole job record must not leak the id into metric attributes.
    const withId = { ...JOB, jobId: JOB_ID, id: JOB_ID };
    telemetry.recordStep(withId, STEP);
    telemetry.recordProbe(withId, PROBE);
    const got = await collected(m.reader, m.metricExporter);

    const single = (name: string) => {
      const ps = points(got.get(name));
      expect(ps, name).toHaveLength(1);
      expect(ps[0].attributes, name).toEqual(EXPECTED_ATTRS);
      return ps[0].value;
    };
    expect(single(METRIC.loss)).toBe(STEP.loss);
    expect(single(METRIC.learningRate)).toBe(STEP.learningRate);
    expect(single(METRIC.gradNorm)).toBe(STEP.gradNorm);
    expect(single(METRIC.tokensPerSecond)).toBe(STEP.tokensPerSecond);
    expect(single(METRIC.stepDuration)).toMatchObject({ count: 1, sum: STEP.stepSeconds });
    expect(got.get(METRIC.stepDuration)?.descriptor.unit).toBe('s');
    expect(single(METRIC.numberMass)).toBe(PROBE.numberMass);
    expect(single(METRIC.numberMassDelta)).toBe(PROBE.numberMassDelta);
    expect(single(METRIC.klToBase)).toBe(PROBE.klToBase);
    expect(single(METRIC.top1Agreement)).toBe(PROBE.top1Agreement);
    expect(single(METRIC.heldoutLossDelta)).toBe(PROBE.heldoutLossDelta);
    const classes = points(got.get(METRIC.classMass)).map((p) => [p.attributes, p.value]);
    expect(classes).toEqual(
      expect.arrayContaining([
        [{ ...EXPECTED_ATTRS, class: 'digit' }, 0.25],
        [{ ...EXPECTED_ATTRS, class: 'word' }, 0.6],
      ]),
    );

    for (const metric of got.values()) {
      for (const p of points(metric)) {
        expect(Object.keys(p.attributes).filter((k) => /job|id/i.test(k)), metric.descriptor.name).toEqual([]);
        expect(Object.values(p.attributes), metric.descriptor.name).not.toContain(JOB_ID);
      }
    }
  });

  it('gauges keep the latest value and skip non-finite ones; jobs.finished counts resting states only', async () => {
    const m = inMemory();
    telemetry = await initTelemetry({ metricReaders: [m.reader] });
    telemetry.recordStep(JOB, STEP);
    telemetry.recordStep(JOB, { ...STEP, loss: Number.NaN, stepSeconds: undefined });
    telemetry.recordJobState(JOB, 'RUNNING');
    telemetry.recordJobState(JOB, 'SUCCEEDED');
    telemetry.recordJobState({ ...JOB, policy: 'full' }, 'FAILED');
    const got = await collected(m.reader, m.metricExporter);
    expect(points(got.get(METRIC.loss)).map((p) => p.value)).toEqual([STEP.loss]);
    expect(points(got.get(METRIC.stepDuration))[0].value).toMatchObject({ count: 1 });
    const finished = points(got.get(METRIC.jobsFinished)).map((p) => [p.attributes, p.value]);
    expect(finished).toEqual(
      expect.arrayContaining([
        [{ ...EXPECTED_ATTRS, state: 'succeeded' }, 1],
        [{ ...EXPECTED_ATTRS, 'narrowtune.policy': 'full', state: 'failed' }, 1],
      ]),
    );
    expect(finished).toHaveLength(2);
  });

  it('jobPhase is a span carrying the job id; a failing phase is an error span and rethrows', async () => {
    const m = inMemory();
    telemetry = await initTelemetry({ spanProcessors: [m.processor] });
    await expect(telemetry.jobPhase('train', { ...JOB, jobId: JOB_ID }, async () => 'done')).resolves.toBe('done');
    await expect(
      telemetry.jobPhase('checkpoint', { ...JOB, jobId: JOB_ID }, async () => {
        throw new Error('disk full');
      }),
    ).rejects.toThrow('disk full');
    // Exports wait for the resource's async (host) attributes.
    await m.processor.forceFlush();
    const [train, checkpoint] = m.spanExporter.getFinishedSpans();
    expect(train.name).toBe('narrowtune.job.train');
    expect(train.attributes).toMatchObject({ ...EXPECTED_ATTRS, 'narrowtune.job_id': JOB_ID, 'narrowtune.job.phase': 'train' });
    expect(train.resource.attributes['service.name']).toBe('narrowtune');
    expect(checkpoint.name).toBe('narrowtune.job.checkpoint');
    expect(checkpoint.status).toMatchObject({ code: SpanStatusCode.ERROR, message: 'disk full' });
  });

  it('refuses a second live instance, and starts again after shutdown', async () => {
    telemetry = await initTelemetry({ metricReaders: [inMemory().reader] });
    await expect(initTelemetry({ metricReaders: [inMemory().reader] })).rejects.toThrow(/already running/);
    await telemetry.shutdown();
    const m = inMemory();
    telemetry = await initTelemetry({ metricReaders: [m.reader] });
    telemetry.recordStep(JOB, STEP);
    expect((await collected(m.reader, m.metricExporter)).has(METRIC.loss)).toBe(true);
  });
});

describe('Prometheus endpoint', () => {
  it('serves narrowtune_* text on /metrics and releases the port on shutdown', async () => {
    telemetry = await initTelemetry({ prometheusPort: 0 });
    const port = telemetry.prometheusPort;
    expect(port).toBeGreaterThan(0);
    telemetry.recordStep(JOB, STEP);
    telemetry.recordJobState(JOB, 'CANCELLED');
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('narrowtune_train_loss');
    expect(text).toMatch(/narrowtune_train_loss\{[^}]*narrowtune_base_model="qwen3-0\.6b"[^}]*\} 2\.5/);
    expect(text).toContain('narrowtune_jobs_finished');
    expect(text).not.toContain(JOB_ID);
    expect((await fetch(`http://127.0.0.1:${port}/elsewhere`)).status).toBe(404);

    await telemetry.shutdown();
    telemetry = null;
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
  });

  it('rejects a port that is already taken', async () => {
    telemetry = await initTelemetry({ prometheusPort: 0 });
    await expect(initTelemetry({ prometheusPort: telemetry.prometheusPort })).rejects.toThrow();
  });
});

describe('gRPC server spans', () => {
  const ECHO_PATH = '/narrowtune.test.Dummy/Echo';
  const echoService: grpc.ServiceDefinition = {
    Echo: {
      path: ECHO_PATH,
      requestStream: false,
      responseStream: false,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
    },
  };

  function unary<T>(fn: (cb: (e: grpc.ServiceError | null, r: T) => void) => void): Promise<T> {
    return new Promise((ok, fail) => fn((e, r) => (e ? fail(e) : ok(r))));
  }

  it('ignores health and reflection by method name, which TuningService never uses', () => {
    const last = (path: string) => path.split('/').at(-1)!;
    const tuning = Object.values(TuningServiceService).map((m) => last(m.path));
    expect(tuning.filter((name) => IGNORED_RPC_METHODS.includes(name))).toEqual([]);
    for (const m of Object.values(healthService)) expect(IGNORED_RPC_METHODS).toContain(last(m.path));
  });

  // grpc-js is imported statically above, i.e. loaded through ESM before telemetry starts: the order
  // `narrowtune serve` has too.
  it('traces an RPC and not Health/Check', async () => {
    const m = inMemory();
    telemetry = await initTelemetry({ spanProcessors: [m.processor] });
    const server = new grpc.Server();
    server.addService(echoService, { Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request) });
    new HealthImplementation({ '': 'SERVING' }).addToServer(server);
    const port = await new Promise<number>((ok, fail) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? fail(e) : ok(p))));
    const address = `127.0.0.1:${port}`;
    const echo = new (grpc.makeGenericClientConstructor(echoService, 'Dummy'))(address, grpc.credentials.createInsecure());
    const health = new (grpc.makeGenericClientConstructor(healthService, 'Health'))(address, grpc.credentials.createInsecure());
    try {
      expect(await unary<Buffer>((cb) => echo.Echo(Buffer.from('hi'), cb))).toEqual(Buffer.from('hi'));
      expect(await unary((cb) => health.Check({ service: '' }, cb))).toEqual({ status: 'SERVING' });
    } finally {
      echo.close();
      health.close();
      server.forceShutdown();
    }
    await vi.waitFor(() => expect(m.spanExporter.getFinishedSpans().filter((s) => s.kind === SpanKind.SERVER)).toHaveLength(1));
    const spans = m.spanExporter.getFinishedSpans();
    const [span] = spans.filter((s) => s.kind === SpanKind.SERVER);
    expect(span.name).toBe('grpc.narrowtune.test.Dummy/Echo');
    expect(span.attributes).toMatchObject({ 'rpc.system': 'grpc', 'rpc.service': 'narrowtune.test.Dummy', 'rpc.method': 'Echo' });
    expect(spans.filter((s) => /health|Check/i.test(s.name))).toEqual([]);
  });

  it('traces TuningService calls on the real server, not its health checks', async () => {
    const m = inMemory();
    telemetry = await initTelemetry({ spanProcessors: [m.processor] });
    const dir = await mkdtemp(join(tmpdir(), 'nt-otel-'));
    const running = await startServer({ port: 0, dataDir: join(dir, 'data') });
    const client = connect(running.port);
    const health = new (grpc.makeGenericClientConstructor(healthService, 'Health'))(`127.0.0.1:${running.port}`, grpc.credentials.createInsecure());
    try {
      await client.list();
      expect(await unary((cb) => health.Check({ service: 'narrowtune.v1.TuningService' }, cb))).toEqual({ status: 'SERVING' });
    } finally {
      client.raw.close();
      health.close();
      await running.shutdown();
      await rm(dir, { recursive: true, force: true });
    }
    await vi.waitFor(() => expect(m.spanExporter.getFinishedSpans().map((s) => s.name)).toContain('grpc.narrowtune.v1.TuningService/ListTuneJobs'));
    expect(m.spanExporter.getFinishedSpans().filter((s) => /health|Check/i.test(s.name))).toEqual([]);
  });
});
