// `narrowtune jobs start|get|list|cancel|watch`: a terminal client of a running narrowtune server.
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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
import { jobEventFromProto } from '../service/event-to-proto.js';
import { DEFAULT_TARGET } from '../service/server-defaults.js';
import { invalidArgument, NarrowtuneError } from '../util/errors.js';
import { type Flags, int, list, parseFlags, str } from './args.js';
import { CLIENT_FLAGS, clientConnection } from './client-options.js';
import { CANCEL_WAIT_S } from './jobs-help.js';
import { jobProgressReporter } from './progress.js';
import { serverError, serverUnreachable } from './rpc-errors.js';
import { closest } from './suggest.js';
import { optionsFromFlags, TRAINING_FLAGS } from './tune-command.js';

const SUBCOMMANDS = ['start', 'get', 'list', 'cancel', 'watch'];
/** How often `jobs cancel` asks whether the job has come to rest. */
const POLL_MS = 200;
const RESTING = new Set([TuneJob_State.SUCCEEDED, TuneJob_State.FAILED, TuneJob_State.CANCELLED]);

function jobNameArg(positionals: string[]): string {
  const name = positionals[0];
  if (!name) throw invalidArgument('NAME', 'a job name (jobs/{id}) is required');
  return name.startsWith('jobs/') ? name : `jobs/${name}`;
}

function call<T>(fn: (cb: (e: grpc.ServiceError | null, r: T) => void) => void): Promise<T> {
  return new Promise((ok, fail) => fn((e, r) => (e ? fail(e) : ok(r))));
}

function summary(job: TuneJob): string {
  const p = job.progress;
  return `${job.name}  ${tuneJob_StateToJSON(job.state).padEnd(9)}  step ${p?.step ?? 0}/${p?.totalSteps ?? 0}${job.outputPath ? `  ${job.outputPath}` : ''}`;
}

/** Replays the server's events through the same progress display as `narrowtune tune`. */
async function watch(client: TuningServiceClient, name: string, from: number): Promise<TuneJob_State> {
  const show = jobProgressReporter(process.stderr, name);
  const call = client.streamMetrics({ name, fromSequence: from });
  let finalState = TuneJob_State.STATE_UNSPECIFIED;
  await new Promise<void>((ok, fail) => {
    call.on('data', (m: StreamMetricsResponse) => {
      if (m.event?.$case === 'finished') finalState = m.event.value.state;
      const e = jobEventFromProto(m.event);
      if (e) show(e);
    });
    call.on('end', ok);
    call.on('error', fail);
  });
  return finalState;
}

/** The job once it has come to rest, or as it stands after `ms`. */
async function settled(client: TuningServiceClient, job: TuneJob, ms: number): Promise<TuneJob> {
  const deadline = Date.now() + ms;
  while (!RESTING.has(job.state) && Date.now() < deadline) {
    await sleep(POLL_MS);
    job = (await call<{ job?: TuneJob }>((cb) => client.getTuneJob({ name: job.name }, cb))).job!;
  }
  return job;
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
        adapter: o.lora ? { ...o.lora, mergeAdapter: o.mergeAdapter } : undefined,
        lwf: o.lwf
          ? { weight: o.lwf.weight, temperature: o.lwf.temperature, teacher: o.lwf.teacher ? { source: { $case: 'path', value: resolve(o.lwf.teacher) } } : undefined }
          : undefined,
      },
      cb,
    ),
  );
  return res.job!;
}

/** Exit status: 1 when a watched job did not succeed; errors throw. */
export async function jobsCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const common = CLIENT_FLAGS;
  const parse = (options: Parameters<typeof parseFlags>[1], positional = 0) => {
    const positionals = rest.slice(0, positional).filter((a) => !a.startsWith('--'));
    const f = parseFlags(rest.slice(positionals.length), { ...common, ...options });
    return { f, positionals };
  };
  let target = DEFAULT_TARGET;
  let tls = false;
  const connect = (f: Flags) => {
    const c = clientConnection(f);
    ({ target, tls } = c);
    return new TuningServiceClient(c.target, c.credentials, c.options);
  };
  let client: TuningServiceClient | null = null;
  const succeeded = (state: TuneJob_State) => (state === TuneJob_State.SUCCEEDED ? 0 : 1);
  try {
    switch (sub) {
      case 'start': {
        const { f } = parse({ ...TRAINING_FLAGS, 'request-id': { type: 'string' }, 'checkpoint-every': { type: 'string' }, watch: { type: 'boolean' } });
        client = connect(f);
        const job = await startJob(client, f);
        process.stdout.write(`${job.name}\n`);
        return f.watch === true ? succeeded(await watch(client, job.name, 0)) : 0;
      }
      case 'get': {
        const { f, positionals } = parse({}, 1);
        client = connect(f);
        const res = await call<{ job?: TuneJob }>((cb) => client!.getTuneJob({ name: jobNameArg(positionals) }, cb));
        process.stdout.write(`${JSON.stringify(TuneJobMsg.toJSON(res.job!), null, 2)}\n`);
        return 0;
      }
      case 'list': {
        const { f } = parse({ state: { type: 'string', multiple: true }, 'page-size': { type: 'string' }, 'page-token': { type: 'string' }, tenant: { type: 'string' } });
        client = connect(f);
        const states = list(f, 'state').map((s) => {
          const v = tuneJob_StateFromJSON(s.toUpperCase());
          if (v === TuneJob_State.UNRECOGNIZED || v === TuneJob_State.STATE_UNSPECIFIED) throw invalidArgument('--state', `unknown state "${s}"`);
          return v;
        });
        const res = await call<{ jobs: TuneJob[]; nextPageToken: string }>((cb) =>
          client!.listTuneJobs({ pageSize: int(f, 'page-size') ?? 0, pageToken: str(f, 'page-token') ?? '', states, tenant: str(f, 'tenant') ?? '' }, cb),
        );
        for (const job of res.jobs) process.stdout.write(`${summary(job)}\n`);
        if (res.nextPageToken) process.stdout.write(`next page: --page-token ${res.nextPageToken}\n`);
        return 0;
      }
      case 'cancel': {
        const { f, positionals } = parse({}, 1);
        client = connect(f);
        const res = await call<{ job?: TuneJob }>((cb) => client!.cancelTuneJob({ name: jobNameArg(positionals) }, cb));
        // The reply shows the job before the cancel took effect: report the state it comes to rest in.
        const job = await settled(client, res.job!, CANCEL_WAIT_S * 1000);
        const note = RESTING.has(job.state) ? '' : `  (cancel requested; it stops at its next step — follow it with: narrowtune jobs watch ${job.name})`;
        process.stdout.write(`${summary(job)}${note}\n`);
        return 0;
      }
      case 'watch': {
        const { f, positionals } = parse({ 'from-sequence': { type: 'string' } }, 1);
        client = connect(f);
        return succeeded(await watch(client, jobNameArg(positionals), int(f, 'from-sequence') ?? 0));
      }
      default: {
        const guess = sub === undefined ? undefined : closest(sub, SUBCOMMANDS);
        throw new NarrowtuneError('invalid_argument', `unknown subcommand "${sub ?? ''}"${guess ? `; did you mean "${guess}"?` : ''} (one of ${SUBCOMMANDS.join(', ')})`);
      }
    }
  } catch (e) {
    if (e instanceof NarrowtuneError || !(e as grpc.ServiceError).code || !client) throw e;
    throw serverUnreachable(e as grpc.ServiceError, client, target, tls) ?? serverError(e as grpc.ServiceError);
  } finally {
    client?.close();
  }
}
