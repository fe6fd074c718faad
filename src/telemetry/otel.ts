// OpenTelemetry export for narrowtune, off unless configured: job metrics, job-phase spans, gRPC server spans.
import { context, diag, metrics, propagation, SpanStatusCode, trace, type Attributes, type Meter } from '@opentelemetry/api';
import { detectResources, defaultResource, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider, type IMetricReader, type MetricReader } from '@opentelemetry/sdk-metrics';
import { NodeSDK } from '@opentelemetry/sdk-node';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { DEFAULT_PROMETHEUS_HOST, readOtelEnv, type OtelEnvPlan } from './otel-env.js';
import { grpcInstrumentation, patchGrpc } from './otel-grpc.js';
import { JobMetrics, jobMetricAttributes, type JobAttrs, type ProbeSample, type StepSample } from './otel-metrics.js';
import { servePrometheus } from './otel-prometheus.js';

export type { JobAttrs, ProbeSample, StepSample } from './otel-metrics.js';
export { METRIC } from './otel-metrics.js';

export type JobPhase = 'load' | 'compile' | 'train' | 'checkpoint' | 'evaluate';

export interface TelemetryOptions {
  /** Serve Prometheus text on this port's /metrics (0: any free port). Null or absent: no endpoint. */
  prometheusPort?: number | null;
  prometheusHost?: string;
  /** Extra readers (tests inject in-memory exporters); they enable telemetry on their own. */
  metricReaders?: MetricReader[];
  /** Span processors replacing the environment's trace exporters (tests inject in-memory exporters). */
  spanProcessors?: SpanProcessor[];
}

export interface Telemetry {
  enabled: boolean;
  /** The port actually serving /metrics, or null without a Prometheus endpoint. */
  prometheusPort: number | null;
  recordStep(attrs: JobAttrs, s: StepSample): void;
  recordProbe(attrs: JobAttrs, p: ProbeSample): void;
  /** Counts jobs reaching SUCCEEDED, FAILED or CANCELLED; other states are ignored. */
  recordJobState(attrs: JobAttrs, state: string): void;
  /** Runs `fn` inside a span `narrowtune.job.<name>`; the job id goes on the span, never on metrics. */
  jobPhase<T>(name: JobPhase, attrs: JobAttrs & { jobId?: string }, fn: () => Promise<T>): Promise<T>;
  /** Flushes and releases everything (providers, the /metrics port, the gRPC patch). Never rejects. */
  shutdown(): Promise<void>;
}

const SCOPE = 'narrowtune';
const PHASE_SPAN_PREFIX = 'narrowtune.job.';
const SPAN_ATTR = { phase: 'narrowtune.job.phase', jobId: 'narrowtune.job_id' } as const;

/** The no-op telemetry of an unconfigured process. */
export const DISABLED: Telemetry = Object.freeze({
  enabled: false,
  prometheusPort: null,
  recordStep: () => {},
  recordProbe: () => {},
  recordJobState: () => {},
  jobPhase: <T>(_name: JobPhase, _attrs: JobAttrs, fn: () => Promise<T>) => fn(),
  shutdown: async () => {},
});

// The SDK owns process-wide globals (tracer provider, context manager, the gRPC patch): two live
// instances would silently fight over them.
let active = false;

export async function initTelemetry(opts: TelemetryOptions = {}): Promise<Telemetry> {
  const plan = readOtelEnv();
  const readers = opts.metricReaders ?? [];
  const processors = opts.spanProcessors ?? [];
  const prometheusPort = opts.prometheusPort ?? null;
  const configured = plan.traces || plan.metrics || prometheusPort !== null || readers.length > 0 || processors.length > 0;
  if (plan.disabled || !configured) return DISABLED;
  if (active) throw new Error('telemetry is already running in this process; shut it down first');
  active = true;
  try {
    return await startTelemetry(plan, { prometheusPort, prometheusHost: opts.prometheusHost ?? DEFAULT_PROMETHEUS_HOST, metricReaders: readers, spanProcessors: processors });
  } catch (e) {
    active = false;
    throw e;
  }
}

async function startTelemetry(plan: OtelEnvPlan, opts: Required<TelemetryOptions>): Promise<Telemetry> {
  // First, so a taken port fails initTelemetry before any global is touched.
  const prometheus = opts.prometheusPort === null ? null : await servePrometheus(opts.prometheusHost, opts.prometheusPort);
  // NodeSDK builds the environment's metric readers only when given none, so ours get their own provider
  // and every instrument is recorded on both; otherwise an OTLP endpoint plus --metrics-port would lose one.
  const ownReaders: IMetricReader[] = [...opts.metricReaders, ...(prometheus ? [prometheus.reader] : [])];
  const meterProvider = ownReaders.length > 0 ? new MeterProvider({ resource: resourceFor(plan.serviceName), readers: ownReaders }) : null;

  const grpc = grpcInstrumentation();
  const sdk = new NodeSDK({
    serviceName: plan.serviceName,
    instrumentations: [grpc],
    // An empty list registers no provider; absent lets NodeSDK read OTEL_TRACES_EXPORTER & co.
    spanProcessors: opts.spanProcessors.length > 0 ? opts.spanProcessors : plan.traces ? undefined : [],
    metricReaders: plan.metrics ? undefined : [],
    // narrowtune emits no OTel logs; left unset, NodeSDK would start an OTLP log exporter anyway.
    logRecordProcessors: [],
  });
  sdk.start();
  patchGrpc(grpc);

  const meters: Meter[] = [];
  if (meterProvider) meters.push(meterProvider.getMeter(SCOPE));
  if (plan.metrics) meters.push(metrics.getMeter(SCOPE));
  const sinks = meters.map((m) => new JobMetrics(m));
  const tracer = trace.getTracer(SCOPE);

  let closing: Promise<void> | null = null;
  return {
    enabled: true,
    prometheusPort: prometheus?.port ?? null,
    recordStep: (attrs, s) => sinks.forEach((m) => m.recordStep(attrs, s)),
    recordProbe: (attrs, p) => sinks.forEach((m) => m.recordProbe(attrs, p)),
    recordJobState: (attrs, state) => sinks.forEach((m) => m.recordJobState(attrs, state)),
    jobPhase: (name, attrs, fn) =>
      tracer.startActiveSpan(`${PHASE_SPAN_PREFIX}${name}`, { attributes: phaseAttributes(name, attrs) }, async (span) => {
        try {
          return await fn();
        } catch (e) {
          span.recordException(e instanceof Error ? e : String(e));
          span.setStatus({ code: SpanStatusCode.ERROR, message: e instanceof Error ? e.message : String(e) });
          throw e;
        } finally {
          span.end();
        }
      }),
    shutdown: () =>
      (closing ??= (async () => {
        grpc.disable();
        // Each step runs even if one fails: an unreachable collector must not keep the port open.
        const results = await Promise.allSettled([sdk.shutdown(), meterProvider?.shutdown(), prometheus?.close()]);
        // Drop the globals so a later initTelemetry (tests, a restarted server) can register its own.
        trace.disable();
        metrics.disable();
        propagation.disable();
        context.disable();
        active = false;
        for (const r of results) if (r.status === 'rejected') diag.error('narrowtune telemetry shutdown', r.reason);
      })()),
  };
}

function phaseAttributes(name: JobPhase, attrs: JobAttrs & { jobId?: string }): Attributes {
  return { ...jobMetricAttributes(attrs), [SPAN_ATTR.phase]: name, ...(attrs.jobId !== undefined ? { [SPAN_ATTR.jobId]: attrs.jobId } : {}) };
}

function resourceFor(serviceName: string) {
  return defaultResource()
    .merge(detectResources({ detectors: [envDetector] }))
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }));
}
