// `narrowtune serve`: the gRPC service, until SIGTERM or SIGINT (then a graceful shutdown).
import { startServer } from '../service/server.js';
import { SERVER_DEFAULTS } from '../service/server-defaults.js';
import { initTelemetry } from '../telemetry/otel.js';
import { DEFAULT_PROMETHEUS_HOST } from '../telemetry/otel-env.js';
import type { TlsFiles } from '../service/tls.js';
import { AUTH_MODES, defaultAuth } from '../service/exposure.js';
import { invalidArgument } from '../util/errors.js';
import { createLogger, LOG_LEVELS } from '../util/log.js';
import { type Flags, int, list, oneOf, parseFlags, pathFlag, str } from './args.js';
import { checkCorsOrigin } from '../web/cors.js';
import { databaseUrl } from './database-url.js';

function tlsFiles(f: Flags): TlsFiles | undefined {
  const [certFile, keyFile, clientCaFile] = [str(f, 'tls-cert'), str(f, 'tls-key'), str(f, 'tls-client-ca')];
  if (certFile === undefined && keyFile === undefined && clientCaFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) throw invalidArgument(certFile === undefined ? '--tls-cert' : '--tls-key', 'TLS needs both --tls-cert and --tls-key');
  return { certFile, keyFile, clientCaFile };
}

/** The web port's options, or undefined without --http-port. */
function webPort(f: Flags): { port: number; host?: string; corsOrigins: string[] } | undefined {
  const port = int(f, 'http-port');
  const origins = list(f, 'cors-origin').map((o) => {
    try {
      return checkCorsOrigin(o);
    } catch (e) {
      throw invalidArgument('--cors-origin', (e as Error).message);
    }
  });
  if (port === undefined) {
    if (str(f, 'http-host') !== undefined || origins.length > 0) throw invalidArgument('--http-port', '--http-host and --cors-origin need --http-port');
    return undefined;
  }
  return { port, host: str(f, 'http-host'), corsOrigins: origins };
}

/** A rate flag: calls per minute, 0 for no limit, or undefined when not given. */
function perMinute(f: Flags, name: string): number | undefined {
  const n = int(f, name);
  if (n !== undefined && n < 0) throw invalidArgument(`--${name}`, `must be 0 (no limit) or more, got ${n}`);
  return n;
}

/** A count flag where 0 means none: a whole number of at least 0, or undefined when not given. */
function nonNegative(f: Flags, name: string): number | undefined {
  const n = int(f, name);
  if (n !== undefined && n < 0) throw invalidArgument(`--${name}`, `must be 0 or more, got ${n}`);
  return n;
}

/** A limit flag: a whole number of at least 1, or undefined when not given. */
function positive(f: Flags, name: string): number | undefined {
  const n = int(f, name);
  if (n !== undefined && n < 1) throw invalidArgument(`--${name}`, `must be at least 1, got ${n}`);
  return n;
}

export async function serveCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, {
    host: { type: 'string' },
    port: { type: 'string' },
    'data-dir': { type: 'string' },
    'database-url': { type: 'string' },
    'max-concurrent-jobs': { type: 'string' },
    'max-queued-jobs': { type: 'string' },
    'checkpoint-every': { type: 'string' },
    'model-root': { type: 'string', multiple: true },
    'data-root': { type: 'string', multiple: true },
    'prometheus-port': { type: 'string' },
    'prometheus-host': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'tls-client-ca': { type: 'string' },
    'allow-insecure': { type: 'boolean' },
    auth: { type: 'string' },
    'tenant-max-running': { type: 'string' },
    'lease-seconds': { type: 'string' },
    threads: { type: 'string' },
    'tenant-max-queued': { type: 'string' },
    'log-level': { type: 'string' },
    'rate-limit-start': { type: 'string' },
    'rate-limit-evaluate': { type: 'string' },
    'http-port': { type: 'string' },
    'http-host': { type: 'string' },
    'cors-origin': { type: 'string', multiple: true },
    'feature-cache': { type: 'string' },
  });
  const logger = createLogger(oneOf(f, 'log-level', LOG_LEVELS) ?? 'info');
  const auth = oneOf(f, 'auth', AUTH_MODES) ?? defaultAuth(str(f, 'host') ?? SERVER_DEFAULTS.host);
  // Before startServer: telemetry patches grpc-js so the server's RPCs are traced.
  const telemetry = await initTelemetry({ prometheusPort: int(f, 'prometheus-port') ?? null, prometheusHost: str(f, 'prometheus-host') });
  if (telemetry.prometheusPort !== null) process.stderr.write(`metrics on http://${str(f, 'prometheus-host') ?? DEFAULT_PROMETHEUS_HOST}:${telemetry.prometheusPort}/metrics\n`);
  const dataDir = str(f, 'data-dir') ?? 'narrowtune-data';
  const roots = (name: string) => (list(f, name).length > 0 ? list(f, name) : undefined);
  const server = await startServer({
    host: str(f, 'host'),
    port: int(f, 'port'),
    dataDir,
    databaseUrl: databaseUrl(f),
    maxConcurrentJobs: nonNegative(f, 'max-concurrent-jobs'),
    maxQueuedJobs: int(f, 'max-queued-jobs'),
    checkpointEvery: int(f, 'checkpoint-every'),
    modelRoots: roots('model-root'),
    dataRoots: roots('data-root'),
    telemetry,
    tls: tlsFiles(f),
    allowInsecure: f['allow-insecure'] === true,
    auth,
    tenantMaxRunning: positive(f, 'tenant-max-running'),
    leaseSeconds: positive(f, 'lease-seconds'),
    threads: positive(f, 'threads'),
    featureCache: pathFlag(f, 'feature-cache'),
    tenantMaxQueued: positive(f, 'tenant-max-queued'),
    rateLimits: { startTunePerMinute: perMinute(f, 'rate-limit-start'), evaluatePerMinute: perMinute(f, 'rate-limit-evaluate') },
    logger,
    web: webPort(f),
  });
  const transport = f['tls-client-ca'] ? 'mutual TLS' : f['tls-cert'] ? 'TLS' : 'plaintext';
  process.stderr.write(`narrowtune serving on ${str(f, 'host') ?? SERVER_DEFAULTS.host}:${server.port} (${transport}, auth ${auth}, data ${server.dataDir}, store ${server.storeLocation})\n`);
  if (server.webUrl !== null) process.stderr.write(`dashboard, Connect and gRPC-Web on ${server.webUrl}/\n`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      process.stderr.write(`${signal}: shutting down (running jobs checkpoint and go back to the queue)\n`);
      void server
        .shutdown()
        .then(() => telemetry.shutdown())
        .then(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
