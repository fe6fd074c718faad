// Server wiring: store, runner, TuningService, health and reflection on one grpc-js server. Importing
// this module starts nothing; `startServer` does, and the returned handle shuts it down gracefully.
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as HEALTH_PROTO } from 'grpc-health-check';
import { TuningServiceService } from '../gen/narrowtune/v1/tuning_service.js';
import { JobRunner } from '../runner/job-runner.js';
import type { JobStore } from '../store/job-store.js';
import { jobStoreLocation, openJobStore } from '../store/open-store.js';
import { apiKeyAuthenticator } from './api-key-auth.js';
import { openAuthenticator } from './caller.js';
import { grpcHandlers } from './grpc-handlers.js';
import { connectRoutes } from './connect-routes.js';
import { type RunningWebServer, startWebServer } from '../web/web-server.js';
import { TuningService } from './tuning-service.js';
import { RATE_LIMIT_DEFAULTS, RateLimiter, type RateLimits } from './rate-limit.js';
import type { Telemetry } from '../telemetry/otel.js';
import { realRoots } from './paths.js';
import { SERVER_DEFAULTS } from './server-defaults.js';
import { type Logger, SILENT } from '../util/log.js';
import { type AuthMode, defaultAuth, exposureVerdict } from './exposure.js';
import { readServerTls, type TlsFiles } from './tls.js';
import { NarrowtuneError } from '../util/errors.js';

export interface ServerOptions {
  host?: string;
  port?: number; // 0: any free port
  /** Job outputs and checkpoints; also the SQLite store's directory when there is no databaseUrl. */
  dataDir: string;
  /** The PostgreSQL store shared with other replicas and workers (open-store.ts); SQLite in dataDir without. */
  databaseUrl?: string;
  /** Jobs this process trains at once; 0: an API replica that trains nothing (workers do). */
  maxConcurrentJobs?: number;
  maxQueuedJobs?: number;
  modelRoots?: string[];
  dataRoots?: string[];
  checkpointEvery?: number;
  /** Seconds a stopping trainer gets to write its checkpoint before it is killed. */
  stopGraceSeconds?: number;
  /** A running job's lease (JobRunnerOptions.leaseSeconds). */
  leaseSeconds?: number;
  /** onnxruntime intra-op threads per training job (JobRunnerOptions.threads). */
  threads?: number;
  /** On-disk image-feature cache of LLaVA jobs and Evaluate calls, a subdirectory per tenant; default: memory only. */
  featureCache?: string;
  /** From initTelemetry(), which must run before this (it patches grpc-js for RPC spans). */
  telemetry?: Telemetry;
  /** RPC, job lifecycle and start/stop lines (util/log.ts); default: none. */
  logger?: Logger;
  /** TLS (mutual with a client CA); plaintext without. */
  tls?: TlsFiles;
  /** How callers authenticate; default api-key, except on a loopback host. api-key: keys in the data dir's store. */
  auth?: AuthMode;
  /** Per tenant: jobs training at once (the rest wait), and pending jobs before StartTune is RESOURCE_EXHAUSTED. */
  tenantMaxRunning?: number;
  tenantMaxQueued?: number;
  /**
   * StartTune and Evaluate calls per minute per API key (rate-limit.ts; without auth, one bucket for all
   * callers); 0 turns a limit off. Default RATE_LIMIT_DEFAULTS.
   */
  rateLimits?: Partial<RateLimits>;
  /** Listen beyond loopback without TLS or authentication (a sidecar terminates TLS); see exposure.ts. */
  allowInsecure?: boolean;
  /** Where a warning about an insecure but allowed configuration goes (default stderr). */
  warn?: (message: string) => void;
  /**
   * The web port: Connect and gRPC-Web for the same service, the dashboard at `/` (web/web-server.ts), with the
   * same authentication and TLS. Off without. corsOrigins: pages of other origins allowed to call (default none).
   */
  web?: { port: number; host?: string; corsOrigins?: string[] };
}

/** Bounded request size: a StartTune carries paths and patterns, never data. */
const MAX_RECEIVE_BYTES = 4 * 1024 * 1024;
const SERVICE_NAME = 'narrowtune.v1.TuningService';
const PROTO_ROOT = fileURLToPath(new URL('../../proto', import.meta.url));
/** grpc-health-check's proto folder, which holds health/v1/health.proto. */
const HEALTH_PROTO_ROOT = resolve(HEALTH_PROTO, '../../..');

export interface RunningServer {
  port: number;
  /** The web port's base URL (e.g. http://127.0.0.1:8080), or null without one. */
  webUrl: string | null;
  dataDir: string;
  store: JobStore;
  /** The store as logs may show it (no password). */
  storeLocation: string;
  /** Health NOT_SERVING, running jobs checkpoint, streams end, then the port closes. */
  shutdown(): Promise<void>;
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  // Checked before anything is opened: a refused configuration leaves no store, port or process behind.
  const host = opts.host ?? SERVER_DEFAULTS.host;
  const tls = opts.tls ? readServerTls(opts.tls) : null;
  const auth = opts.auth ?? defaultAuth(host);
  const webHost = opts.web ? (opts.web.host ?? host) : null;
  for (const h of webHost === null || webHost === host ? [host] : [host, webHost]) {
    const exposure = exposureVerdict({ host: h, tls: tls !== null, mutualTls: tls?.requestCert ?? false, auth, allowInsecure: opts.allowInsecure ?? false });
    if (exposure.refuse) throw new NarrowtuneError('failed_precondition', exposure.refuse);
    if (exposure.warn) (opts.warn ?? ((m) => process.stderr.write(`warning: ${m}\n`)))(exposure.warn);
  }
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const storeLocation = jobStoreLocation({ dataDir, databaseUrl: opts.databaseUrl });
  const store = await openJobStore({ dataDir, databaseUrl: opts.databaseUrl });
  const log = opts.logger ?? SILENT;
  const featureCache = opts.featureCache === undefined ? undefined : resolve(opts.featureCache);
  const runner = new JobRunner({
    store,
    log,
    dataDir,
    maxConcurrentJobs: opts.maxConcurrentJobs ?? SERVER_DEFAULTS.maxConcurrentJobs,
    tenantMaxRunning: opts.tenantMaxRunning,
    stopGraceSeconds: opts.stopGraceSeconds,
    leaseSeconds: opts.leaseSeconds,
    threads: opts.threads,
    featureCache,
    telemetry: opts.telemetry,
  });
  const shutdownController = new AbortController();
  const roots = {
    modelRoots: realRoots(opts.modelRoots ?? [dataDir, process.cwd()]),
    dataRoots: realRoots(opts.dataRoots ?? [dataDir, process.cwd()]),
  };
  const service = new TuningService({
    store,
    runner,
    ...roots,
    maxQueuedJobs: opts.maxQueuedJobs ?? SERVER_DEFAULTS.maxQueuedJobs,
    tenantMaxQueued: opts.tenantMaxQueued,
    rateLimiter: new RateLimiter({
      startTunePerMinute: opts.rateLimits?.startTunePerMinute ?? RATE_LIMIT_DEFAULTS.startTunePerMinute,
      evaluatePerMinute: opts.rateLimits?.evaluatePerMinute ?? RATE_LIMIT_DEFAULTS.evaluatePerMinute,
    }),
    checkpointEvery: opts.checkpointEvery ?? SERVER_DEFAULTS.checkpointEvery,
    featureCache,
    shutdown: shutdownController.signal,
    log,
  });

  // Health and reflection are separate services on this server: they stay open to probes without a key.
  const authenticate = auth === 'api-key' ? apiKeyAuthenticator(store.keys, roots) : openAuthenticator(roots);
  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_RECEIVE_BYTES });
  server.addService(TuningServiceService, grpcHandlers(service, authenticate, shutdownController.signal, log));
  const health = new HealthImplementation({ '': 'SERVING', [SERVICE_NAME]: 'SERVING' });
  health.addToServer(server);
  // Reflection describes every service this server answers, so `grpcurl … list` shows both.
  const definition = protoLoader.loadSync(['narrowtune/v1/tuning_service.proto', 'health/v1/health.proto'], {
    includeDirs: [PROTO_ROOT, HEALTH_PROTO_ROOT],
  });
  new ReflectionService(definition).addToServer(server);

  const port = await new Promise<number>((ok, fail) =>
    server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${opts.port ?? SERVER_DEFAULTS.port}`, tls?.credentials ?? grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? fail(e) : ok(p),
    ),
  ).catch(async (e: unknown) => {
    // A PostgreSQL store's pool and LISTEN connection would keep the process alive.
    await store.close();
    throw e;
  });
  let web: RunningWebServer | null = null;
  if (opts.web && webHost !== null) {
    const routes = connectRoutes(service, authenticate, shutdownController.signal, log);
    web = await startWebServer({ host: webHost, port: opts.web.port, routes, readMaxBytes: MAX_RECEIVE_BYTES, corsOrigins: opts.web.corsOrigins, tls }).catch((e: unknown) => {
      server.forceShutdown();
      void store.close();
      throw e;
    });
  }
  await runner.begin();
  log.info({ host, port, web: web?.url ?? null, tls: tls !== null, mutualTls: tls?.requestCert ?? false, auth, dataDir, store: storeLocation, runsJobs: opts.maxConcurrentJobs ?? SERVER_DEFAULTS.maxConcurrentJobs }, 'server started');

  let closing: Promise<void> | null = null;
  return {
    port,
    webUrl: web?.url ?? null,
    dataDir,
    store,
    storeLocation,
    shutdown: () =>
      (closing ??= (async () => {
        health.setStatus('', 'NOT_SERVING');
        health.setStatus(SERVICE_NAME, 'NOT_SERVING');
        log.info({ port, running: runner.activeCount }, 'server stopping: running jobs checkpoint');
        await runner.shutdown();
        shutdownController.abort();
        await Promise.all([new Promise<void>((ok) => server.tryShutdown(() => ok())), web?.close()]);
        await store.close();
        log.info({ port }, 'server stopped');
      })()),
  };
}
