// The grpc-js transport of TuningService: authenticate the call from its metadata, run the service method,
// and move values and errors. Every error leaves through toGrpcError; nothing a client sends throws past here.
// Each call ends with one log line (rpc-log.ts).
import * as grpc from '@grpc/grpc-js';
import type { TuningServiceServer } from '../gen/narrowtune/v1/tuning_service.js';
import { type Logger, SILENT } from '../util/log.js';
import type { Authenticator, CallContext, Caller } from './caller.js';
import { toGrpcError } from './grpc-errors.js';
import { logRpc } from './rpc-log.js';
import type { TuningService } from './tuning-service.js';

function authorization(metadata: grpc.Metadata): string | undefined {
  const value = metadata.get('authorization')[0];
  return typeof value === 'string' ? value : undefined;
}

function drainOrAbort(call: grpc.ServerWritableStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** An AbortSignal that fires when the call is cancelled, closes, or the server shuts down. */
function callSignal(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>, shutdown: AbortSignal): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  const abort = () => controller.abort();
  call.on('cancelled', abort);
  call.on('close', abort);
  shutdown.addEventListener('abort', abort, { once: true });
  return { signal: controller.signal, release: () => shutdown.removeEventListener('abort', abort) };
}

export function grpcHandlers(service: TuningService, authenticate: Authenticator, shutdown: AbortSignal, log: Logger = SILENT): TuningServiceServer {
  const done = (method: string, startedAt: number, caller: Caller | null, peer: string, outcome: grpc.ServiceError | null, sent?: number) =>
    logRpc(log, { method, code: outcome?.code ?? grpc.status.OK, startedAt, caller, transport: 'grpc', peer, message: outcome?.message, sent });
  const unary =
    <Req, Res>(method: string, fn: (req: Req, call: CallContext) => Res | Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => {
      const startedAt = performance.now();
      const { signal, release } = callSignal(call, shutdown);
      let caller: Caller | null = null;
      authenticate(authorization(call.metadata))
        .then((c) => fn(call.request, { caller: (caller = c), signal }))
        .then(
          (res) => {
            done(method, startedAt, caller, call.getPeer(), null);
            callback(null, res);
          },
          (e: unknown) => {
            const error = toGrpcError(e);
            done(method, startedAt, caller, call.getPeer(), error);
            callback(error);
          },
        )
        .finally(release);
    };
  return {
    startTune: unary('StartTune', async (r, c) => ({ job: await service.startTune(r, c) })),
    getTuneJob: unary('GetTuneJob', async (r, c) => ({ job: await service.getTuneJob(r, c) })),
    listTuneJobs: unary('ListTuneJobs', (r, c) => service.listTuneJobs(r, c)),
    cancelTuneJob: unary('CancelTuneJob', async (r, c) => ({ job: await service.cancelTuneJob(r, c) })),
    evaluate: unary('Evaluate', (r, c) => service.evaluate(r, c)),
    mergeModels: unary('MergeModels', (r, c) => service.mergeModels(r, c)),
    streamMetrics: (call) => {
      const startedAt = performance.now();
      const { signal, release } = callSignal(call, shutdown);
      let caller: Caller | null = null;
      let sent = 0;
      void (async () => {
        try {
          caller = await authenticate(authorization(call.metadata));
          for await (const msg of service.streamMetrics(call.request, { caller, signal })) {
            if (signal.aborted) break;
            sent++;
            // Respect back-pressure: a slow dashboard pauses reading from the store, not memory growth.
            if (!call.write(msg)) await drainOrAbort(call, signal);
          }
          // A stream the client cancelled ends CANCELLED; one the server ends (job at rest, shutdown) ends OK.
          const cancelled = call.cancelled ? Object.assign(new Error('cancelled by the client'), { code: grpc.status.CANCELLED }) : null;
          done('StreamMetrics', startedAt, caller, call.getPeer(), cancelled as grpc.ServiceError | null, sent);
          call.end();
        } catch (e) {
          const error = toGrpcError(e);
          done('StreamMetrics', startedAt, caller, call.getPeer(), error, sent);
          call.emit('error', error);
        } finally {
          release();
        }
      })();
    },
  };
}
