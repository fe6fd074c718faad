// The grpc-js transport of TuningService: authenticate the call from its metadata, run the service method,
// and move values and errors. Every error leaves through toGrpcError; nothing a client sends throws past here.
import type * as grpc from '@grpc/grpc-js';
import type { TuningServiceServer } from '../gen/narrowtune/v1/tuning_service.js';
import type { Authenticator, CallContext } from './caller.js';
import { toGrpcError } from './grpc-errors.js';
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

export function grpcHandlers(service: TuningService, authenticate: Authenticator, shutdown: AbortSignal): TuningServiceServer {
  const unary =
    <Req, Res>(fn: (req: Req, call: CallContext) => Res | Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => {
      const { signal, release } = callSignal(call, shutdown);
      authenticate(authorization(call.metadata))
        .then((caller) => fn(call.request, { caller, signal }))
        .then(
          (res) => callback(null, res),
          (e: unknown) => callback(toGrpcError(e)),
        )
        .finally(release);
    };
  return {
    startTune: unary(async (r, c) => ({ job: await service.startTune(r, c) })),
    getTuneJob: unary((r, c) => ({ job: service.getTuneJob(r, c) })),
    listTuneJobs: unary((r, c) => service.listTuneJobs(r, c)),
    cancelTuneJob: unary((r, c) => ({ job: service.cancelTuneJob(r, c) })),
    evaluate: unary((r, c) => service.evaluate(r, c)),
    streamMetrics: (call) => {
      const { signal, release } = callSignal(call, shutdown);
      void (async () => {
        try {
          const caller = await authenticate(authorization(call.metadata));
          for await (const msg of service.streamMetrics(call.request, { caller, signal })) {
            if (signal.aborted) break;
            // Respect back-pressure: a slow dashboard pauses reading from the store, not memory growth.
            if (!call.write(msg)) await drainOrAbort(call, signal);
          }
          call.end();
        } catch (e) {
          call.emit('error', toGrpcError(e));
        } finally {
          release();
        }
      })();
    },
  };
}
