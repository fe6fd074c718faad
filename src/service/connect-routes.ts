// The Connect and gRPC-Web transport of TuningService (connect-node, on the web port): authenticate the call
// from its `authorization` header, run the same service method as the gRPC port, and move values and errors.
// Messages cross between the protobuf-es form connect-node speaks and the ts-proto form the service speaks
// (es-messages.ts); every error leaves through toConnectError; each call ends with one log line (rpc-log.ts).
import type { DescMessage, MessageShape } from '@bufbuild/protobuf';
import { Code, type ConnectRouter, ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import * as es from '../gen/es/narrowtune/v1/tuning_service_pb.js';
import * as ts from '../gen/narrowtune/v1/tuning_service.js';
import { type Logger, SILENT } from '../util/log.js';
import { PEER } from '../web/web-server.js';
import type { Authenticator, CallContext, Caller } from './caller.js';
import { toConnectError } from './connect-errors.js';
import { forms, type MessageForms, toProtobufEs, toTsProto } from './es-messages.js';
import { logRpc } from './rpc-log.js';
import type { TuningService } from './tuning-service.js';

/** Each method's request and response in both generated forms. */
const MESSAGES = {
  startTune: [forms(es.StartTuneRequestSchema, ts.StartTuneRequest), forms(es.StartTuneResponseSchema, ts.StartTuneResponse)],
  getTuneJob: [forms(es.GetTuneJobRequestSchema, ts.GetTuneJobRequest), forms(es.GetTuneJobResponseSchema, ts.GetTuneJobResponse)],
  listTuneJobs: [forms(es.ListTuneJobsRequestSchema, ts.ListTuneJobsRequest), forms(es.ListTuneJobsResponseSchema, ts.ListTuneJobsResponse)],
  cancelTuneJob: [forms(es.CancelTuneJobRequestSchema, ts.CancelTuneJobRequest), forms(es.CancelTuneJobResponseSchema, ts.CancelTuneJobResponse)],
  evaluate: [forms(es.EvaluateRequestSchema, ts.EvaluateRequest), forms(es.EvaluateResponseSchema, ts.EvaluateResponse)],
  mergeModels: [forms(es.MergeModelsRequestSchema, ts.MergeModelsRequest), forms(es.MergeModelsResponseSchema, ts.MergeModelsResponse)],
  streamMetrics: [forms(es.StreamMetricsRequestSchema, ts.StreamMetricsRequest), forms(es.StreamMetricsResponseSchema, ts.StreamMetricsResponse)],
} as const;

/** The call's signal, also aborted when the server shuts down; `release` detaches it from the server's. */
function callSignal(ctx: HandlerContext, shutdown: AbortSignal): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  const abort = () => controller.abort();
  if (ctx.signal.aborted || shutdown.aborted) abort();
  ctx.signal.addEventListener('abort', abort, { once: true });
  shutdown.addEventListener('abort', abort, { once: true });
  return {
    signal: controller.signal,
    release: () => {
      ctx.signal.removeEventListener('abort', abort);
      shutdown.removeEventListener('abort', abort);
    },
  };
}

export function connectRoutes(service: TuningService, authenticate: Authenticator, shutdown: AbortSignal, log: Logger = SILENT): (router: ConnectRouter) => void {
  const done = (method: string, ctx: HandlerContext, startedAt: number, caller: Caller | null, error: ConnectError | null, sent?: number) =>
    logRpc(log, { method, code: error?.code ?? 0, startedAt, caller, transport: ctx.protocolName, peer: ctx.values.get(PEER), message: error?.rawMessage, sent });
  const begin = async (ctx: HandlerContext, signal: AbortSignal, onCaller: (c: Caller) => void): Promise<CallContext> => {
    const caller = await authenticate(ctx.requestHeader.get('authorization') ?? undefined);
    onCaller(caller);
    return { caller, signal };
  };

  function unary<I extends DescMessage, O extends DescMessage, Req, Res>(
    method: string,
    [input, output]: readonly [MessageForms<I, Req>, MessageForms<O, Res>],
    fn: (req: Req, call: CallContext) => Res | Promise<Res>,
  ): (req: MessageShape<I>, ctx: HandlerContext) => Promise<MessageShape<O>> {
    return async (req, ctx) => {
      const startedAt = performance.now();
      const { signal, release } = callSignal(ctx, shutdown);
      let caller: Caller | null = null;
      try {
        const res = toProtobufEs(output, await fn(toTsProto(input, req), await begin(ctx, signal, (c) => (caller = c))));
        done(method, ctx, startedAt, caller, null);
        return res;
      } catch (e) {
        const error = toConnectError(e);
        done(method, ctx, startedAt, caller, error);
        throw error;
      } finally {
        release();
      }
    };
  }

  const impl: ServiceImpl<typeof es.TuningService> = {
    startTune: unary('StartTune', MESSAGES.startTune, async (r, c) => ({ job: await service.startTune(r, c) })),
    getTuneJob: unary('GetTuneJob', MESSAGES.getTuneJob, async (r, c) => ({ job: await service.getTuneJob(r, c) })),
    listTuneJobs: unary('ListTuneJobs', MESSAGES.listTuneJobs, (r, c) => service.listTuneJobs(r, c)),
    cancelTuneJob: unary('CancelTuneJob', MESSAGES.cancelTuneJob, async (r, c) => ({ job: await service.cancelTuneJob(r, c) })),
    evaluate: unary('Evaluate', MESSAGES.evaluate, (r, c) => service.evaluate(r, c)),
    mergeModels: unary('MergeModels', MESSAGES.mergeModels, (r, c) => service.mergeModels(r, c)),
    async *streamMetrics(req, ctx) {
      const [input, output] = MESSAGES.streamMetrics;
      const startedAt = performance.now();
      const { signal, release } = callSignal(ctx, shutdown);
      let caller: Caller | null = null;
      let sent = 0;
      try {
        const call = await begin(ctx, signal, (c) => (caller = c));
        // connect-node writes each message before asking for the next: a slow reader pauses the store follower.
        for await (const msg of service.streamMetrics(toTsProto(input, req), call)) {
          if (signal.aborted) break;
          sent++;
          yield toProtobufEs(output, msg);
        }
        // A stream the client left ends CANCELLED in the log; one the server ends (job at rest, shutdown) ends OK.
        const left = ctx.signal.aborted && !shutdown.aborted ? new ConnectError('cancelled by the client', Code.Canceled) : null;
        done('StreamMetrics', ctx, startedAt, caller, left, sent);
      } catch (e) {
        const error = toConnectError(e);
        done('StreamMetrics', ctx, startedAt, caller, error, sent);
        throw error;
      } finally {
        release();
      }
    },
  };
  return (router) => router.service(es.TuningService, impl);
}
