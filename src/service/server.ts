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
import { JobStore } from '../store/job-store.js';
import { openAuthenticator } from './caller.js';
import { grpcHandlers } from './grpc-handlers.js';
import { TuningService } from './tuning-service.js';
import type { Telemetry } from '../telemetry/otel.js';
import { realRoots } from './paths.js';
import { SERVER_DEFAULTS } from './server-defaults.js';

export interface ServerOptions {
  host?: string;
  port?: number; // 0: any free port
  dataDir: string;
  maxConcurrentJobs?: number;
  maxQueuedJobs?: number;
  modelRoots?: string[];
  dataRoots?: string[];
  checkpointEvery?: number;
  /** Seconds a stopping trainer gets to write its checkpoint before it is killed. */
  stopGraceSeconds?: number;
  /** From initTelemetry(), which must run before this (it patches grpc-js for RPC spans). */
  telemetry?: Telemetry;
}

/** Bounded request size: a StartTune carries paths and patterns, never data. */
const MAX_RECEIVE_BYTES = 4 * 1024 * 1024;
const SERVICE_NAME = 'narrowtune.v1.TuningService';
const PROTO_ROOT = fileURLToPath(new URL('../../proto', import.meta.url));
/** grpc-health-check's proto folder, which holds health/v1/health.proto. */
const HEALTH_PROTO_ROOT = resolve(HEALTH_PROTO, '../../..');

export interface RunningServer {
  port: number;
  dataDir: string;
  store: JobStore;
  /** Health NOT_SERVING, running jobs checkpoint, streams end, then the port closes. */
  shutdown(): Promise<void>;
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const store = JobStore.open(dataDir);
  const runner = new JobRunner({
    store,
    dataDir,
    maxConcurrentJobs: opts.maxConcurrentJobs ?? SERVER_DEFAULTS.maxConcurrentJobs,
    stopGraceSeconds: opts.stopGraceSeconds,
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
    checkpointEvery: opts.checkpointEvery ?? SERVER_DEFAULTS.checkpointEvery,
    shutdown: shutdownController.signal,
  });

  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_RECEIVE_BYTES });
  server.addService(TuningServiceService, grpcHandlers(service, openAuthenticator(roots), shutdownController.signal));
  const health = new HealthImplementation({ '': 'SERVING', [SERVICE_NAME]: 'SERVING' });
  health.addToServer(server);
  // Reflection describes every service this server answers, so `grpcurl … list` shows both.
  const definition = protoLoader.loadSync(['narrowtune/v1/tuning_service.proto', 'health/v1/health.proto'], {
    includeDirs: [PROTO_ROOT, HEALTH_PROTO_ROOT],
  });
  new ReflectionService(definition).addToServer(server);

  const host = opts.host ?? SERVER_DEFAULTS.host;
  const port = await new Promise<number>((ok, fail) =>
    server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${opts.port ?? SERVER_DEFAULTS.port}`, grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? fail(e) : ok(p),
    ),
  );
  runner.recover();

  let closing: Promise<void> | null = null;
  return {
    port,
    dataDir,
    store,
    shutdown: () =>
      (closing ??= (async () => {
        health.setStatus('', 'NOT_SERVING');
        health.setStatus(SERVICE_NAME, 'NOT_SERVING');
        await runner.shutdown();
        shutdownController.abort();
        await new Promise<void>((ok) => server.tryShutdown(() => ok()));
        store.close();
      })()),
  };
}
