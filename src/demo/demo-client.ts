// The demo's side of the gRPC API: one promise per call it makes (StartTune and its metric stream, Evaluate,
// MergeModels), so that demo.ts reads as the experiment.
import type * as grpc from '@grpc/grpc-js';
import {
  type DeepPartial,
  type EvalDataset,
  type EvaluateResponse,
  EvaluateRequest,
  MergeModelsRequest,
  type MergeModelsResponse,
  type ModelRef,
  StartTuneRequest,
  type StreamMetricsResponse,
  type TuneJob,
  TuneJob_State,
  type TuningServiceClient,
} from '../gen/narrowtune/v1/tuning_service.js';

/** A model the API can name: a directory inside the model roots, or a SUCCEEDED job. */
export type ModelName = { path: string } | { job: string };

export const modelRef = (m: ModelName): DeepPartial<ModelRef> => ({ source: 'path' in m ? { $case: 'path', value: m.path } : { $case: 'job', value: m.job } });

function call<T>(fn: (cb: (e: grpc.ServiceError | null, r: T) => void) => void): Promise<T> {
  return new Promise((ok, fail) => fn((e, r) => (e ? fail(e) : ok(r))));
}

export interface Evaluation {
  accuracy: Record<string, number>;
  response: EvaluateResponse;
}

export async function evaluate(client: TuningServiceClient, model: ModelName, datasets: DeepPartial<EvalDataset>[], base: ModelName | null, seqLen: number): Promise<Evaluation> {
  const request = EvaluateRequest.fromPartial({ model: modelRef(model), baseModel: base ? modelRef(base) : undefined, datasets, batchSize: 32, seqLen });
  const response = await call<EvaluateResponse>((cb) => client.evaluate(request, cb));
  return { response, accuracy: Object.fromEntries(response.results.map((d) => [d.name, d.accuracy])) };
}

export function merge(client: TuningServiceClient, base: ModelName, tuned: ModelName, alpha: number, outputPath: string): Promise<MergeModelsResponse> {
  const request = MergeModelsRequest.fromPartial({ baseModel: modelRef(base), tunedModel: modelRef(tuned), alpha, outputPath });
  return call((cb) => client.mergeModels(request, cb));
}

/** Starts a job, streams its metrics to the end (a line at every probe) and returns it once it SUCCEEDED. */
export async function tune(client: TuningServiceClient, request: DeepPartial<StartTuneRequest>, log: (line: string) => void): Promise<{ job: TuneJob; events: StreamMetricsResponse[] }> {
  const started = (await call<{ job?: TuneJob }>((cb) => client.startTune(StartTuneRequest.fromPartial(request), cb))).job!;
  const events = await follow(client, started.name, log);
  const job = (await call<{ job?: TuneJob }>((cb) => client.getTuneJob({ name: started.name }, cb))).job!;
  if (job.state !== TuneJob_State.SUCCEEDED) throw new Error(`${job.name} ended ${TuneJob_State[job.state]}: ${job.error?.message ?? ''}`);
  return { job, events };
}

async function follow(client: TuningServiceClient, name: string, log: (line: string) => void): Promise<StreamMetricsResponse[]> {
  const events: StreamMetricsResponse[] = [];
  let last = { total: 0, loss: Number.NaN };
  await new Promise<void>((ok, fail) => {
    const stream = client.streamMetrics({ name, fromSequence: 0 });
    stream.on('data', (e: StreamMetricsResponse) => {
      events.push(e);
      if (e.event?.$case === 'step') last = { total: e.event.value.totalSteps, loss: e.event.value.loss };
      if (e.event?.$case === 'probe') {
        const p = e.event.value;
        const sign = p.numberMassDelta >= 0 ? '+' : '';
        log(`step ${String(p.step).padStart(4)}/${last.total}  loss ${last.loss.toFixed(4)}  number_mass ${p.numberMass.toFixed(4)} (${sign}${p.numberMassDelta.toFixed(4)})  kl_to_base ${p.klToBase.toFixed(4)}`);
      }
    });
    stream.on('end', ok);
    stream.on('error', fail);
  });
  return events;
}
