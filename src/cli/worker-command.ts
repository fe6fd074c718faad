// `narrowtune worker`: a training process with no API. It claims jobs from the shared store (job-runner.ts), until
// SIGTERM or SIGINT, when its jobs checkpoint and their leases go back to the queue.
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { JobRunner } from '../runner/job-runner.js';
import type { JobStore } from '../store/job-store.js';
import { jobStoreLocation, openJobStore } from '../store/open-store.js';
import { initTelemetry } from '../telemetry/otel.js';
import { DEFAULT_PROMETHEUS_HOST } from '../telemetry/otel-env.js';
import { invalidArgument } from '../util/errors.js';
import { createLogger, LOG_LEVELS } from '../util/log.js';
import { type Flags, int, oneOf, parseFlags, pathFlag, str } from './args.js';
import { databaseUrl } from './database-url.js';
import { DEFAULT_DATA_DIR } from './keys-help.js';
import { WORKER_DEFAULTS } from './worker-help.js';

function atLeast(f: Flags, name: string, min: number): number | undefined {
  const n = int(f, name);
  if (n !== undefined && n < min) throw invalidArgument(`--${name}`, `must be at least ${min}, got ${n}`);
  return n;
}

/** GET /healthz: 200 while the store answers a query, 503 when it does not; the body says who and how busy. */
async function serveHealth(host: string, port: number, workerId: string, store: JobStore, runner: JobRunner): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/healthz') {
      res.writeHead(404).end();
      return;
    }
    store.countInStates(['RUNNING']).then(
      () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok', worker: workerId, running: runner.activeCount })),
      (e: unknown) =>
        res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'store unavailable', worker: workerId, error: (e as Error).message })),
    );
  });
  await new Promise<void>((ok, fail) => server.once('error', fail).listen(port, host, () => ok()));
  return server;
}

export async function workerCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, {
    'database-url': { type: 'string' },
    'data-dir': { type: 'string' },
    'max-concurrent-jobs': { type: 'string' },
    'lease-seconds': { type: 'string' },
    threads: { type: 'string' },
    'tenant-max-running': { type: 'string' },
    'poll-ms': { type: 'string' },
    'health-port': { type: 'string' },
    'health-host': { type: 'string' },
    'prometheus-port': { type: 'string' },
    'prometheus-host': { type: 'string' },
    'log-level': { type: 'string' },
    'feature-cache': { type: 'string' },
  });
  // Every flag is checked before anything is opened.
  const logger = createLogger(oneOf(f, 'log-level', LOG_LEVELS) ?? 'info');
  const dataDir = resolve(str(f, 'data-dir') ?? DEFAULT_DATA_DIR);
  const url = databaseUrl(f);
  const maxConcurrentJobs = atLeast(f, 'max-concurrent-jobs', 1) ?? WORKER_DEFAULTS.maxConcurrentJobs;
  const leaseSeconds = atLeast(f, 'lease-seconds', 1);
  const threads = atLeast(f, 'threads', 1);
  const cacheDir = pathFlag(f, 'feature-cache');
  const featureCache = cacheDir === undefined ? undefined : resolve(cacheDir);
  const tenantMaxRunning = atLeast(f, 'tenant-max-running', 1);
  const pollMs = atLeast(f, 'poll-ms', 10) ?? WORKER_DEFAULTS.pollMs;
  const healthPort = atLeast(f, 'health-port', 0);
  const healthHost = str(f, 'health-host') ?? WORKER_DEFAULTS.healthHost;
  if (healthPort === undefined && str(f, 'health-host') !== undefined) throw invalidArgument('--health-port', '--health-host needs --health-port');
  const location = jobStoreLocation({ dataDir, databaseUrl: url });

  const telemetry = await initTelemetry({ prometheusPort: int(f, 'prometheus-port') ?? null, prometheusHost: str(f, 'prometheus-host') });
  if (telemetry.prometheusPort !== null) process.stderr.write(`metrics on http://${str(f, 'prometheus-host') ?? DEFAULT_PROMETHEUS_HOST}:${telemetry.prometheusPort}/metrics\n`);
  mkdirSync(dataDir, { recursive: true });
  const store = await openJobStore({ dataDir, databaseUrl: url }).catch(async (e: unknown) => {
    await telemetry.shutdown();
    throw e;
  });
  const runner = new JobRunner({ store, dataDir, maxConcurrentJobs, leaseSeconds, threads, featureCache, tenantMaxRunning, pollMs, log: logger, telemetry });
  const health = healthPort === undefined ? null : await serveHealth(healthHost, healthPort, runner.workerId, store, runner).catch(async (e: unknown) => {
    await Promise.all([store.close(), telemetry.shutdown()]);
    throw invalidArgument('--health-port', `cannot listen on ${healthHost}:${healthPort}: ${(e as Error).message}`);
  });
  const stopped = new Promise<string>((ok) => {
    process.once('SIGTERM', () => ok('SIGTERM'));
    process.once('SIGINT', () => ok('SIGINT'));
  });

  await runner.begin();
  const healthUrl = health ? `http://${healthHost}:${(health.address() as AddressInfo).port}/healthz` : null;
  logger.info({ worker: runner.workerId, store: location, dataDir, maxConcurrentJobs, leaseSeconds: leaseSeconds ?? null, tenantMaxRunning: tenantMaxRunning ?? null, health: healthUrl }, 'worker started');
  process.stderr.write(`narrowtune worker ${runner.workerId} training up to ${maxConcurrentJobs} job(s) at once from ${location} (data ${dataDir})\n`);
  if (healthUrl) process.stderr.write(`health on ${healthUrl}\n`);

  const signal = await stopped;
  process.stderr.write(`${signal}: shutting down (running jobs checkpoint and go back to the queue)\n`);
  logger.info({ worker: runner.workerId, running: runner.activeCount }, 'worker stopping: running jobs checkpoint');
  await runner.shutdown();
  health?.closeAllConnections();
  await new Promise<void>((ok) => (health ? health.close(() => ok()) : ok()));
  await store.close();
  await telemetry.shutdown();
  logger.info({ worker: runner.workerId }, 'worker stopped');
}
