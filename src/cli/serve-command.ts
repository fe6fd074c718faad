// `narrowtune serve`: the gRPC service, until SIGTERM or SIGINT (then a graceful shutdown).
import { SERVER_DEFAULTS, startServer } from '../service/server.js';
import { DEFAULT_PROMETHEUS_HOST, initTelemetry } from '../telemetry/otel.js';
import { int, list, parseFlags, str } from './args.js';

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

export async function serveCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, {
    host: { type: 'string' },
    port: { type: 'string' },
    'data-dir': { type: 'string' },
    'max-concurrent-jobs': { type: 'string' },
    'max-queued-jobs': { type: 'string' },
    'checkpoint-every': { type: 'string' },
    'model-root': { type: 'string', multiple: true },
    'data-root': { type: 'string', multiple: true },
    'prometheus-port': { type: 'string' },
    'prometheus-host': { type: 'string' },
  });
  // Before startServer: telemetry patches grpc-js so the server's RPCs are traced.
  const telemetry = await initTelemetry({ prometheusPort: int(f, 'prometheus-port') ?? null, prometheusHost: str(f, 'prometheus-host') });
  if (telemetry.prometheusPort !== null) process.stderr.write(`metrics on http://${str(f, 'prometheus-host') ?? DEFAULT_PROMETHEUS_HOST}:${telemetry.prometheusPort}/metrics\n`);
  const dataDir = str(f, 'data-dir') ?? 'narrowtune-data';
  const roots = (name: string) => (list(f, name).length > 0 ? list(f, name) : undefined);
  const server = await startServer({
    host: str(f, 'host'),
    port: int(f, 'port'),
    dataDir,
    maxConcurrentJobs: int(f, 'max-concurrent-jobs'),
    maxQueuedJobs: int(f, 'max-queued-jobs'),
    checkpointEvery: int(f, 'checkpoint-every'),
    modelRoots: roots('model-root'),
    dataRoots: roots('data-root'),
    telemetry,
  });
  process.stderr.write(`narrowtune serving on ${str(f, 'host') ?? SERVER_DEFAULTS.host}:${server.port} (data ${server.dataDir})\n`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      process.stderr.write(`${signal}: shutting down (running jobs checkpoint and resume on the next start)\n`);
      void server
        .shutdown()
        .then(() => telemetry.shutdown())
        .then(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
