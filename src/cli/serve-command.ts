// `narrowtune serve`: the gRPC service, until SIGTERM or SIGINT (then a graceful shutdown).
import { startServer } from '../service/server.js';
import { SERVER_DEFAULTS } from '../service/server-defaults.js';
import { initTelemetry } from '../telemetry/otel.js';
import { DEFAULT_PROMETHEUS_HOST } from '../telemetry/otel-env.js';
import { int, list, parseFlags, str } from './args.js';

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
