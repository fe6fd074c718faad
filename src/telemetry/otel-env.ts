// Which OpenTelemetry signals the standard OTEL_* environment asks for, and the defaults of the rest. Pure, so
// tests can pass an env (and `narrowtune serve --help` can show the defaults without loading OpenTelemetry).

export interface OtelEnvPlan {
  /** OTEL_SDK_DISABLED=true: nothing is exported, whatever else is configured. */
  disabled: boolean;
  /** Spans go to the exporter(s) NodeSDK builds from OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_*. */
  traces: boolean;
  /** Metrics go to the reader(s) NodeSDK builds from OTEL_METRICS_EXPORTER / OTEL_EXPORTER_OTLP_*. */
  metrics: boolean;
  serviceName: string;
}

export const DEFAULT_SERVICE_NAME = 'narrowtune';

/** Loopback like the gRPC server's default: exposing metrics to the network is the operator's choice. */
export const DEFAULT_PROMETHEUS_HOST = '127.0.0.1';
const NO_EXPORTER = 'none';

export function readOtelEnv(env: NodeJS.ProcessEnv = process.env): OtelEnvPlan {
  const endpoint = isSet(env.OTEL_EXPORTER_OTLP_ENDPOINT);
  return {
    disabled: env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true',
    traces: wantsSignal(env.OTEL_TRACES_EXPORTER, endpoint || isSet(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)),
    metrics: wantsSignal(env.OTEL_METRICS_EXPORTER, endpoint || isSet(env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT)),
    serviceName: env.OTEL_SERVICE_NAME?.trim() || DEFAULT_SERVICE_NAME,
  };
}

// NodeSDK treats an unset *_EXPORTER as "otlp to localhost"; narrowtune is off unless configured, so an
// unset exporter only counts when an OTLP endpoint says where the data should go.
function wantsSignal(exporters: string | undefined, otlpEndpoint: boolean): boolean {
  const names = (exporters ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s.length > 0);
  if (names.length === 0) return otlpEndpoint;
  return !names.includes(NO_EXPORTER);
}

function isSet(value: string | undefined): boolean {
  return (value?.trim() ?? '') !== '';
}
