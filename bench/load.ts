// Load test: N tenants, each with its own API key, start tiny jobs, stream them and cancel some, against a
// `narrowtune serve` child process (TLS, --auth api-key) while probes measure health Check and GetTuneJob:
// requests/s sustained and latency percentiles while jobs train. `npx tsx bench/load.ts --help`.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as HEALTH_PROTO } from 'grpc-health-check';
import { parseFlags, int, num, str } from '../src/cli/args.js';
import { clientConnection } from '../src/cli/client-options.js';
import { StartTuneRequest, type StreamMetricsResponse, type TuneJob, TuneJob_State, TuningServiceClient } from '../src/gen/narrowtune/v1/tuning_service.js';
import { initModel } from '../src/model/init-model.js';
import { SqliteJobStore } from '../src/store/sqlite-job-store.js';
import { makeTestPki } from '../test/support/test-certificates.js';

export const LOAD_HELP = `Usage: npx tsx bench/load.ts [options]

Starts \`narrowtune serve\` (TLS, --auth api-key, one key per tenant) on a tiny init-model checkpoint; N tenants
each start a job, stream its metrics to the end, cancel every k-th one after its first step, and start the
next, until the duration ends. Meanwhile probes call grpc.health.v1 Check and GetTuneJob (each tenant's
latest job, with its key) back to back: first with no job training (--idle), then from the first training
step to the end of the duration ("while jobs train"). Prints requests/s and latency percentiles per RPC and
phase, and the share of the second window in which a job was training.

  --tenants N              concurrent tenants (default 4)
  --idle S                 seconds of probes before the load, with no job training (default 10)
  --duration S             seconds of load (default 60)
  --steps N                optimizer steps per job (default 40)
  --cancel-every K         cancel every K-th job of a tenant after its first step (default 2; 0: never)
  --probes N               concurrent probe loops per RPC (default 4)
  --max-concurrent-jobs N  the server's training processes (default 2)
  --log-level L            the server's log level (default info; its log goes to a file)
  --json FILE              also write the report as JSON
`;

const HIDDEN = 32;
const EXAMPLES = 32;
const CALL_DEADLINE_MS = 30_000;

export interface LoadOptions {
  tenants: number;
  durationS: number;
  idleS: number;
  steps: number;
  cancelEvery: number;
  probes: number;
  maxConcurrentJobs: number;
  logLevel: string;
}

export interface LatencyStats {
  requests: number;
  errors: number;
  perSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface LoadReport {
  options: LoadOptions;
  windowS: number;
  /** Share of the window in which at least one job was training (between its first step and its end). */
  trainingShare: number;
  jobs: { started: number; succeeded: number; cancelled: number; failed: number; refused: number; steps: number; streamEvents: number };
  /** Before any load job: the same probes with no job training. */
  idle: { health: LatencyStats; getTuneJob: LatencyStats };
  training: { health: LatencyStats; getTuneJob: LatencyStats };
  /** Failures other than the expected ones, by message (first few). */
  unexpected: string[];
}

type HealthClient = grpc.Client & {
  check(req: { service: string }, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: { status: string }) => void): void;
};

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function stats(latencies: number[], errors: number, windowS: number): LatencyStats {
  const s = [...latencies].sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 100) / 100;
  return {
    requests: s.length,
    errors,
    perSecond: windowS > 0 ? r(s.length / windowS) : 0,
    p50Ms: r(percentile(s, 50)),
    p90Ms: r(percentile(s, 90)),
    p99Ms: r(percentile(s, 99)),
    maxMs: r(s.at(-1) ?? NaN),
  };
}

function unary<T>(fn: (cb: (e: grpc.ServiceError | null, r: T) => void) => void): Promise<T> {
  return new Promise((ok, fail) => fn((e, r) => (e ? fail(e) : ok(r))));
}

const deadline = () => ({ deadline: Date.now() + CALL_DEADLINE_MS });

/** `narrowtune serve` as a child process; resolves with its port once it says it is serving. */
async function startServer(dir: string, pki: { serverCert: string; serverKey: string }, o: LoadOptions, roots: string[]): Promise<{ child: ChildProcess; port: number }> {
  const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
  const log = await open(join(dir, 'server.log'), 'w');
  const args = ['serve', '--port', '0', '--data-dir', join(dir, 'data'), '--auth', 'api-key', '--tls-cert', pki.serverCert, '--tls-key', pki.serverKey];
  args.push('--max-concurrent-jobs', String(o.maxConcurrentJobs), '--max-queued-jobs', String(Math.max(100, o.tenants * 2)), '--log-level', o.logLevel);
  for (const r of roots) args.push('--model-root', r, '--data-root', r);
  const child = spawn(process.execPath, ['--import', 'tsx', main, ...args], { stdio: ['ignore', log.fd, 'pipe'] });
  await log.close(); // the child holds its own descriptor
  const port = await new Promise<number>((ok, fail) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += d;
      const m = /serving on \S+:(\d+)/.exec(err);
      if (m) ok(Number(m[1]));
    });
    child.once('exit', (code) => fail(new Error(`narrowtune serve exited (${code}): ${err}`)));
  });
  return { child, port };
}

export async function runLoad(o: LoadOptions, progress: (line: string) => void = () => {}): Promise<LoadReport> {
  const dir = await mkdtemp(join(tmpdir(), 'narrowtune-load-'));
  const unexpected: string[] = [];
  const noteUnexpected = (e: unknown) => {
    if (unexpected.length < 20) unexpected.push((e as Error).message);
  };
  let server: ChildProcess | null = null;
  try {
    const pki = await makeTestPki(dir, 'load');
    const model = (await initModel({ arch: 'qwen2', hidden: HIDDEN, layers: 2, heads: 4, kvHeads: 2, out: join(dir, 'models', 'tiny') })).dir;
    await mkdir(join(dir, 'data'), { recursive: true });
    const data = join(dir, 'data', 'train.jsonl');
    const lines = Array.from({ length: EXAMPLES }, (_, i) => JSON.stringify({ prompt: `item ${i}:`, completion: ` value ${i % 7} and ${i % 5}` }));
    await writeFile(data, `${lines.join('\n')}\n`);
    // Keys are written to the data directory's store before the server opens it, as `narrowtune keys create` does.
    const store = SqliteJobStore.open(join(dir, 'data'));
    const keys = await Promise.all(Array.from({ length: o.tenants }, async (_, i) => (await store.keys.create({ tenant: `tenant-${i}`, role: 'member' })).secret));
    await store.close();
    const started = await startServer(dir, pki, o, [dir]);
    server = started.child;
    const target = `localhost:${started.port}`;
    progress(`server on ${target} (TLS, api-key), ${o.tenants} tenants, ${o.durationS} s`);

    const connect = (key: string) => {
      const c = clientConnection({ target, 'tls-ca': pki.caCert, 'api-key': key }, {});
      return new TuningServiceClient(c.target, c.credentials, c.options);
    };
    const tenants = keys.map((key) => ({ client: connect(key), latest: null as string | null, training: false }));
    const jobs = { started: 0, succeeded: 0, cancelled: 0, failed: 0, refused: 0, steps: 0, streamEvents: 0 };

    /** Starts one job, streams it to its end, cancels it after its first step if asked. */
    const runJob = async (t: (typeof tenants)[number], requestId: string, steps: number, cancel: boolean) => {
      let job: TuneJob;
      try {
        const request = StartTuneRequest.fromPartial({
          requestId,
          baseModel: { source: { $case: 'path', value: model } },
          trainingData: data,
          hyperparameters: { steps, learningRate: 1e-2, batchSize: 4, seqLen: 32, checkpointEvery: steps },
        });
        job = (await unary<{ job?: TuneJob }>((cb) => t.client.startTune(request, new grpc.Metadata(), deadline(), cb))).job!;
      } catch (e) {
        if ((e as grpc.ServiceError).code !== grpc.status.RESOURCE_EXHAUSTED) return noteUnexpected(e);
        jobs.refused++;
        if (jobs.refused === 1) progress(`  first refusal: ${(e as grpc.ServiceError).details}`);
        return new Promise<void>((r) => setTimeout(r, 500));
      }
      jobs.started++;
      t.latest = job.name;
      const state = await new Promise<TuneJob_State>((resolve) => {
        let final = TuneJob_State.STATE_UNSPECIFIED;
        let cancelled = false;
        const call = t.client.streamMetrics({ name: job.name, fromSequence: 0 });
        call.on('data', (m: StreamMetricsResponse) => {
          jobs.streamEvents++;
          if (m.event?.$case === 'step') {
            jobs.steps++;
            t.training = true;
            if (cancel && !cancelled) {
              cancelled = true;
              t.client.cancelTuneJob({ name: job.name }, new grpc.Metadata(), deadline(), (e) => e && noteUnexpected(e));
            }
          }
          if (m.event?.$case === 'finished') final = m.event.value.state;
        });
        call.on('error', (e) => {
          noteUnexpected(e);
          resolve(final);
        });
        call.on('end', () => resolve(final));
      });
      t.training = false;
      if (state === TuneJob_State.SUCCEEDED) jobs.succeeded++;
      else if (state === TuneJob_State.CANCELLED) jobs.cancelled++;
      else jobs.failed++;
    };

    // Warm-up: one 1-step job per tenant, so every GetTuneJob probe has a job of its own tenant to read.
    await Promise.all(tenants.map((t, i) => runJob(t, `load-warm-${i}`, 1, false)));
    Object.assign(jobs, { started: 0, succeeded: 0, cancelled: 0, failed: 0, refused: 0, steps: 0, streamEvents: 0 });

    const healthPkg = grpc.loadPackageDefinition(protoLoader.loadSync(HEALTH_PROTO, { enums: String })) as unknown as {
      grpc: { health: { v1: { Health: new (target: string, creds: grpc.ChannelCredentials, options: grpc.ClientOptions) => HealthClient } } };
    };
    const hc = clientConnection({ target, 'tls-ca': pki.caCert }, {});
    const health = new healthPkg.grpc.health.v1.Health(hc.target, hc.credentials, hc.options);

    // Probes run throughout; each call counts in the phase it started in (none between idle and the first step).
    type Phase = 'idle' | 'load';
    const latencies = { idle: { health: [] as number[], getTuneJob: [] as number[] }, load: { health: [] as number[], getTuneJob: [] as number[] } };
    const errors = { idle: { health: 0, getTuneJob: 0 }, load: { health: 0, getTuneJob: 0 } };
    let phase: Phase | null = 'idle';
    let probing = true;
    const probeLoop = async (kind: 'health' | 'getTuneJob', i: number) => {
      const t = tenants[i % tenants.length]!;
      while (probing) {
        const counted = phase;
        const t0 = performance.now();
        try {
          if (kind === 'health') await unary((cb) => health.check({ service: '' }, deadline(), cb));
          else await unary((cb) => t.client.getTuneJob({ name: t.latest! }, new grpc.Metadata(), deadline(), cb));
          if (counted) latencies[counted][kind].push(performance.now() - t0);
        } catch (e) {
          if (counted) errors[counted][kind]++;
          noteUnexpected(e);
        }
      }
    };
    const probes = [...Array.from({ length: o.probes }, (_, i) => probeLoop('health', i)), ...Array.from({ length: o.probes }, (_, i) => probeLoop('getTuneJob', i))];
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    progress(`  idle: ${o.idleS} s of probes with no job training`);
    await sleep(o.idleS * 1000);
    phase = null;

    const stopAt = Date.now() + o.durationS * 1000;
    const tenantLoop = async (t: (typeof tenants)[number], index: number) => {
      for (let n = 1; Date.now() < stopAt; n++) await runJob(t, `load-${index}-${n}`, o.steps, o.cancelEvery > 0 && n % o.cancelEvery === 0);
    };
    const loops = tenants.map((t, i) => tenantLoop(t, i));
    let busyTicks = 0;
    let ticks = 0;
    let windowStart = 0;
    const sampler = setInterval(() => {
      if (phase === null && jobs.steps > 0) {
        phase = 'load';
        windowStart = performance.now();
      }
      if (phase !== 'load') return;
      ticks++;
      if (tenants.some((t) => t.training)) busyTicks++;
    }, 10);
    const ticker = setInterval(() => progress(`  ${Math.round((stopAt - Date.now()) / 1000)} s left: ${jobs.started} jobs started, ${jobs.steps} steps, ${latencies.load.health.length + latencies.load.getTuneJob.length} probes`), 10_000);
    await sleep(Math.max(0, stopAt - Date.now()));
    const windowS = phase === 'load' ? (performance.now() - windowStart) / 1000 : 0;
    phase = null;
    probing = false;
    clearInterval(sampler);
    clearInterval(ticker);
    await Promise.all(probes);
    // Jobs still training finish (or are cancelled) before the report: nothing is left half-done.
    progress('  load over; waiting for the last jobs to end');
    await Promise.all(loops);
    for (const t of tenants) t.client.close();
    health.close();
    const phaseStats = (p: Phase, seconds: number) => ({ health: stats(latencies[p].health, errors[p].health, seconds), getTuneJob: stats(latencies[p].getTuneJob, errors[p].getTuneJob, seconds) });
    return {
      options: o,
      windowS: Math.round(windowS * 10) / 10,
      trainingShare: ticks === 0 ? 0 : Math.round((busyTicks / ticks) * 100) / 100,
      jobs,
      idle: phaseStats('idle', o.idleS),
      training: phaseStats('load', windowS),
      unexpected,
    };
  } finally {
    if (server && server.exitCode === null) {
      const exited = new Promise((r) => server!.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  }
}

export function formatReport(r: LoadReport): string {
  const row = (name: string, s: LatencyStats) =>
    `| ${name} | ${s.requests} | ${s.perSecond} | ${s.p50Ms} | ${s.p90Ms} | ${s.p99Ms} | ${s.maxMs} | ${s.errors} |`;
  const j = r.jobs;
  return [
    `${r.options.tenants} tenants, ${r.options.probes} probe loops per RPC; idle ${r.options.idleS} s, then ${r.windowS} s from the first step (a job training ${Math.round(r.trainingShare * 100)} % of it)`,
    `jobs: ${j.started} started (${j.succeeded} succeeded, ${j.cancelled} cancelled, ${j.failed} failed), ${j.refused} refused, ${j.steps} steps and ${j.streamEvents} events streamed`,
    '',
    '| RPC | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | errors |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    row('health Check, idle', r.idle.health),
    row('GetTuneJob, idle', r.idle.getTuneJob),
    row('health Check, jobs training', r.training.health),
    row('GetTuneJob, jobs training', r.training.getTuneJob),
    ...(r.unexpected.length ? ['', `unexpected failures: ${r.unexpected.slice(0, 5).join('; ')}`] : []),
  ].join('\n');
}

async function main(argv: string[]): Promise<void> {
  if (argv.includes('--help')) return void process.stdout.write(LOAD_HELP);
  const f = parseFlags(argv, {
    tenants: { type: 'string' },
    duration: { type: 'string' },
    idle: { type: 'string' },
    steps: { type: 'string' },
    'cancel-every': { type: 'string' },
    probes: { type: 'string' },
    'max-concurrent-jobs': { type: 'string' },
    'log-level': { type: 'string' },
    json: { type: 'string' },
  });
  const report = await runLoad(
    {
      tenants: int(f, 'tenants') ?? 4,
      durationS: num(f, 'duration') ?? 60,
      idleS: num(f, 'idle') ?? 10,
      steps: int(f, 'steps') ?? 40,
      cancelEvery: int(f, 'cancel-every') ?? 2,
      probes: int(f, 'probes') ?? 4,
      maxConcurrentJobs: int(f, 'max-concurrent-jobs') ?? 2,
      logLevel: str(f, 'log-level') ?? 'info',
    },
    (line) => process.stderr.write(`${line}\n`),
  );
  process.stdout.write(`${formatReport(report)}\n`);
  const json = str(f, 'json');
  if (json) await writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
  if (report.unexpected.length > 0) process.exitCode = 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main(process.argv.slice(2));
