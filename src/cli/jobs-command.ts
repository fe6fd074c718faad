// `narrowtune jobs start|get|list|cancel|watch`: a terminal client of a running narrowtune server.
import { resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  type StreamMetricsResponse,
  type TuneJob,
  TuneJob as TuneJobMsg,
  TuneJob_State,
  tuneJob_StateFromJSON,
  tuneJob_StateToJSON,
  TuningServiceClient,
} from '../gen/narrowtune/v1/tuning_service.js';
import { decodeStatusDetails } from '../service/grpc-errors.js';
import { SERVER_DEFAULTS } from '../service/server.js';
import { invalidArgument, NarrowtuneError } from '../util/errors.js';
import { type Flags, int, list, parseFlags, str } from './args.js';
import { progressReporter } from './progress.js';
import { optionsFromFlags, TRAINING_FLAGS } from './tune-command.js';

const DEFAULT_TARGET = `${SERVER_DEFAULTS.host}:${SERVER_DEFAULTS.port}`;

export const JOBS_HELP = `Usage: narrowtune jobs <start|get|list|cancel|watch> [options] [--target HOST:PORT]

Talks to a narrowtune server (default --target ${DEFAULT_TARGET}).

  jobs start --model DIR --data FILE [tune's policy and optimisation flags] [--request-id ID] [--watch]
                      starts a job (paths are resolved here, then checked against the server's roots)
  jobs get NAME       prints a job as JSON
  jobs list [--state STATE]... [--page-size N] [--page-token T]
                      lists jobs, newest first
  jobs cancel NAME    cancels a pending or running job
  jobs watch NAME [--from-sequence N]
                      follows a job's metrics live until it comes to rest

NAME is "jobs/{id}" (the id alone also works). Exit status: 0 done (for watch: SUCCEEDED), 1 otherwise.
`;

function jobNameArg(positionals: string[]): string {
  const name = positionals[0];
  if (!name) throw invalidArgument('NAME', 'a job name (jobs/{id}) is required');
  return name.startsWith('jobs/') ? name : `jobs/${name}`;
}

function call<T>(fn: (cb: (e: grpc.ServiceError | null, r: T) => void) => void): Promise<T> {
  return new Promise((ok, fail) => fn((e, r) => (e ? fail(e) : ok(r))));
}

/** An RPC error as the server meant it: code name, message and each field violation on its own line. */
function describeRpcError(e: grpc.ServiceError): string {
  const details = e.metadata ? decodeStatusDetails(e.metadata) : null;
  const lines = [`${grpc.status[e.code] ?? e.code}: ${e.details || e.message}`];
  for (const v of details?.badRequest?.fieldViolations ?? []) lines.push(`  ${v.field}: ${v.description}`);
  return lines.join('\n');
}

function summary(job: TuneJob): string {
  const p = job.progress;
  return `${job.name}  ${tuneJob_StateToJSON(job.state).padEnd(9)}  step ${p?.step ?? 0}/${p?.totalSteps ?? 0}${job.outputPath ? `  ${job.outputPath}` : ''}`;
}

/** Replays the server's events through the same progress display as `narrowtune tune`. */
async function watch(client: TuningServiceClient, name: string, from: number): Promise<TuneJob_State> {
  const show = progressReporter(process.stderr);
  const call = client.streamMetrics({ name, fromSequence: from });
  let finalState = TuneJob_State.STATE_UNSPECIFIED;
  await new Promise<void>((ok, fail) => {
    call.on('data', (m: StreamMetricsResponse) => {
      const e = m.event;
      if (e?.$case === 'started') {
        const v = e.value;
        show({ type: 'start', totalSteps: v.totalSteps, resumedFromStep: v.resumedFromStep, batchSize: 0, gradAccum: 0, seq: 0, examples: 0, trainable: v.trainableTensors, trainableParameters: v.trainableParameters, frozenTensors: 0, provider: v.provider, compileMs: 0, sessionMs: 0 });
      } else if (e?.$case === 'step') {
        const v = e.value;
        show({ type: 'step', step: v.step, totalSteps: v.totalSteps, loss: v.loss, lr: v.learningRate, gradNorm: v.gradNorm, tokens: 0, tokensPerSec: v.tokensPerSecond, elapsedSec: v.elapsedSeconds });
      } else if (e?.$case === 'validation') {
        show({ type: 'validation', step: e.value.step, loss: e.value.loss, tokenAccuracy: e.value.tokenAccuracy });
      } else if (e?.$case === 'probe') {
        show({ type: 'probe', positions: 0, tokenAccuracy: 0, ...e.value });
      } else if (e?.$case === 'budgetExceeded') {
        const v = e.value;
        show({ type: 'budget_exceeded', limit: v.limit as 'max_kl_to_base', value: v.value, threshold: v.threshold, step: v.step, keptStep: v.keptStep });
      } else if (e?.$case === 'finished') {
        finalState = e.value.state;
        const err = e.value.error ? ` — ${e.value.error.message}` : '';
        process.stderr.write(`\n${name} ${tuneJob_StateToJSON(e.value.state)}${e.value.outputPath ? `: ${e.value.outputPath}` : ''}${err}\n`);
      }
    });
    call.on('end', ok);
    call.on('error', fail);
  });
  return finalState;
}

async function startJob(client: TuningServiceClient, f: Flags): Promise<TuneJob> {
  const o = optionsFromFlags(f);
  const res = await call<{ job?: TuneJob }>((cb) =>
    client.startTune(
      {
        requestId: str(f, 'request-id') ?? '',
        baseModel: { source: { $case: 'path', value: resolve(o.model) } },
        trainingData: resolve(o.data),
        validationData: o.validationData ? resolve(o.validationData) : '',
        probeData: o.probeData ? resolve(o.probeData) : '',
        policy: { preset: o.policy.preset ?? '', include: o.policy.include ?? [], exclude: o.policy.exclude ?? [] },
        hyperparameters: {
          optimizer: o.optimizer,
          learningRate: o.lr,
          weightDecay: o.weightDecay,
          steps: o.steps ?? undefined,
          epochs: o.steps === null ? o.epochs : undefined,
          batchSize: o.batchSize,
          gradAccum: o.gradAccum,
          seqLen: o.seqLen,
          schedule: o.schedule,
          warmupSteps: o.warmupSteps ?? undefined,
          clipNorm: o.clipNorm ?? 0,
          seed: o.seed,
          checkpointEvery: int(f, 'checkpoint-every'),
          evalEvery: o.evalEvery ?? undefined,
          probeEvery: o.probeEvery ?? undefined,
        },
        device: o.device,
        tokenClasses: o.tokenClasses,
        driftBudget: {
          maxKlToBase: o.driftBudget.maxKlToBase ?? undefined,
          maxNumberMassDelta: o.driftBudget.maxNumberMassDelta ?? undefined,
          maxHeldoutLossDelta: o.driftBudget.maxHeldoutLossDelta ?? undefined,
        },
      },
      cb,
    ),
  );
  return res.job!;
}

export async function jobsCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const common = { target: { type: 'string' } } as const;
  const parse = (options: Parameters<typeof parseFlags>[1], positional = 0) => {
    const positionals = rest.slice(0, positional).filter((a) => !a.startsWith('--'));
    const f = parseFlags(rest.slice(positionals.length), { ...common, ...options });
    return { f, positionals };
  };
  const connect = (f: Flags) => new TuningServiceClient(str(f, 'target') ?? DEFAULT_TARGET, grpc.credentials.createInsecure());
  let client: TuningServiceClient | null = null;
  try {
    switch (sub) {
      case 'start': {
        const { f } = parse({ ...TRAINING_FLAGS, 'request-id': { type: 'string' }, 'checkpoint-every': { type: 'string' }, watch: { type: 'boolean' } });
        client = connect(f);
        const job = await startJob(client, f);
        process.stdout.write(`${job.name}\n`);
        if (f.watch === true && (await watch(client, job.name, 0)) !== TuneJob_State.SUCCEEDED) process.exitCode = 1;
        return;
      }
      case 'get': {
        const { f, positionals } = parse({}, 1);
        client = connect(f);
        const res = await call<{ job?: TuneJob }>((cb) => client!.getTuneJob({ name: jobNameArg(positionals) }, cb));
        process.stdout.write(`${JSON.stringify(TuneJobMsg.toJSON(res.job!), null, 2)}\n`);
        return;
      }
      case 'list': {
        const { f } = parse({ state: { type: 'string', multiple: true }, 'page-size': { type: 'string' }, 'page-token': { type: 'string' } });
        client = connect(f);
        const states = list(f, 'state').map((s) => {
          const v = tuneJob_StateFromJSON(s.toUpperCase());
          if (v === TuneJob_State.UNRECOGNIZED || v === TuneJob_State.STATE_UNSPECIFIED) throw invalidArgument('--state', `unknown state "${s}"`);
          return v;
        });
        const res = await call<{ jobs: TuneJob[]; nextPageToken: string }>((cb) =>
          client!.listTuneJobs({ pageSize: int(f, 'page-size') ?? 0, pageToken: str(f, 'page-token') ?? '', states }, cb),
        );
        for (const job of res.jobs) process.stdout.write(`${summary(job)}\n`);
        if (res.nextPageToken) process.stdout.write(`next page: --page-token ${res.nextPageToken}\n`);
        return;
      }
      case 'cancel': {
        const { f, positionals } = parse({}, 1);
        client = connect(f);
        const res = await call<{ job?: TuneJob }>((cb) => client!.cancelTuneJob({ name: jobNameArg(positionals) }, cb));
        process.stdout.write(`${summary(res.job!)}\n`);
        return;
      }
      case 'watch': {
        const { f, positionals } = parse({ 'from-sequence': { type: 'string' } }, 1);
        client = connect(f);
        if ((await watch(client, jobNameArg(positionals), int(f, 'from-sequence') ?? 0)) !== TuneJob_State.SUCCEEDED) process.exitCode = 1;
        return;
      }
      default:
        throw invalidArgument('jobs', `unknown subcommand "${sub ?? ''}"; one of start, get, list, cancel, watch`);
    }
  } catch (e) {
    if (e instanceof NarrowtuneError || !(e as grpc.ServiceError).code) throw e;
    const rpc = e as grpc.ServiceError;
    throw new NarrowtuneError(rpc.code === grpc.status.INVALID_ARGUMENT ? 'invalid_argument' : 'failed_precondition', describeRpcError(rpc));
  } finally {
    client?.close();
  }
}
