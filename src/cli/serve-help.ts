// `narrowtune serve --help`, apart from the command so that printing it loads neither gRPC nor OpenTelemetry.
import { SERVER_DEFAULTS } from '../service/server-defaults.js';
import { DEFAULT_PROMETHEUS_HOST } from '../telemetry/otel-env.js';

export const SERVE_HELP = `Usage: narrowtune serve [options]

Runs the narrowtune.v1.TuningService gRPC server (with grpc.health.v1 and server reflection).
Jobs, metric events and checkpoints live in --data-dir (SQLite + files); jobs that were running when
the server stopped resume from their last checkpoint on the next start.

  --host H                 address to listen on (default ${SERVER_DEFAULTS.host})
  --port P                 port (default ${SERVER_DEFAULTS.port}; 0 picks a free one)
  --data-dir DIR           job store and job outputs (default ./narrowtune-data)
  --max-concurrent-jobs N  jobs training at once, each in its own process (default ${SERVER_DEFAULTS.maxConcurrentJobs})
  --max-queued-jobs N      pending jobs before StartTune answers RESOURCE_EXHAUSTED (default ${SERVER_DEFAULTS.maxQueuedJobs})
  --checkpoint-every N     default step-checkpoint interval for jobs (default ${SERVER_DEFAULTS.checkpointEvery})
  --model-root DIR         directory requests may read models from (repeatable; default the data dir
                           and the working directory)
  --data-root DIR          directory requests may read datasets from (repeatable; same default)
  --prometheus-port P      serve OpenTelemetry metrics for Prometheus at http://HOST:P/metrics
  --prometheus-host H      address of the metrics endpoint (default ${DEFAULT_PROMETHEUS_HOST})

OpenTelemetry is off unless configured: the standard OTEL_* variables (e.g. OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER, OTEL_SERVICE_NAME) or --prometheus-port turn it on.
Metrics are named narrowtune.* (loss, learning rate, grad norm, tokens/s, drift figures, jobs finished)
with the base model and policy as attributes; RPCs and job phases are traced.
`;
