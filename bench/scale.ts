// Scale-out measurements on one machine: a throwaway PostgreSQL, `narrowtune serve --max-concurrent-jobs 0`
// replicas as child processes, and this process as the writer (a worker's store calls) and the clients.
// `npx tsx bench/scale.ts --help`.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { int, parseFlags } from '../src/cli/args.js';
import { type StreamMetricsResponse, TuningServiceClient } from '../src/gen/narrowtune/v1/tuning_service.js';
import { JobRunner } from '../src/runner/job-runner.js';
import type { JobSpec } from '../src/store/job-events.js';
import type { JobStore, Lease } from '../src/store/job-store.js';
import { PostgresJobStore } from '../src/store/postgres-job-store.js';
import { SqliteJobStore } from '../src/store/sqlite-job-store.js';
import { DEFAULTS } from '../src/trainer/options.js';
import type { TuneResult } from '../src/trainer/trainer.js';
import { machineBusySeconds } from '../src/bench/proc-stats.js';
import { startPostgres, type TestPostgres } from '../test/support/postgres.js';

export const SCALE_HELP = `Usage: npx tsx bench/scale.ts [options]

Starts a throwaway PostgreSQL (Debian's postgresql package, as the tests do) and measures:
  1. store cost: createJob and appendEvent per second and their latency, PostgreSQL against SQLite (WAL) on
     this machine, one caller after another;
  2. throughput: one API replica, --jobs jobs each followed by one StreamMetrics client, events appended as
     fast as the writer can: events/s inserted and delivered, and insert-to-delivery latency p50/p99;
  3. fan-out: two API replicas, --streams concurrent streams split between them over --jobs jobs, events at
     --rate per second in all: delivered events/s, latency p50/p99, the replicas' CPU;
  4. claims: 2 and 8 workers (JobRunner, each with its own store connections, trainers faked for 50 ms): a burst
     of --claim-jobs jobs drained (jobs/s, the claimJob call's latency while the workers race), then jobs one at a
     time to idle workers (creation to claim: the poll interval's share).

  --seconds S        length of each timed phase (default 10)
  --jobs N           jobs the events go to in phases 2 and 3 (default 20)
  --streams N        concurrent streams in phase 3 (default 200)
  --rate N           events per second in phase 3, over all jobs (default 400)
  --ops N            calls per store operation in phase 1 (default 1000)
  --claim-jobs N     jobs per claim run in phase 4 (default 200)
  --poll-ms N        the workers' poll interval in phase 4 (default 1000, the worker's default)
  --phases LIST      which to run, comma-separated: store, delivery, claims (default all)
`;

const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
const SPEC: JobSpec = { options: { ...DEFAULTS, model: '/models/base', data: '/data/train.jsonl' }, request: {} };
const LEASE_MS = 600_000;

const percentile = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function stepEvent(step: number) {
  return { type: 'step' as const, step, totalSteps: 1_000_000, loss: 2.5, learningRate: 1e-5, gradNorm: 1.2, tokens: 2048, tokensPerSecond: 3000, elapsedSeconds: step / 10 };
}

/** Utime + stime of a process in seconds (Linux). */
async function cpuSeconds(pid: number): Promise<number> {
  const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

// ---- 1. store cost ----

async function storeCost(name: string, store: JobStore, ops: number): Promise<string[]> {
  const create: number[] = [];
  let t = performance.now();
  for (let i = 0; i < ops; i++) {
    const t0 = performance.now();
    await store.createJob({ spec: SPEC, requestId: `cost-${i}` });
    create.push(performance.now() - t0);
  }
  const createS = (performance.now() - t) / 1000;
  const lease = (await store.claimJob({ workerId: 'bench', leaseMs: LEASE_MS }))!;
  const append: number[] = [];
  t = performance.now();
  for (let i = 1; i <= ops; i++) {
    const t0 = performance.now();
    await store.appendEvent(lease, stepEvent(i));
    append.push(performance.now() - t0);
  }
  const appendS = (performance.now() - t) / 1000;
  // A training step's whole write set: progress, the step event, a checkpoint record and its event.
  const step: number[] = [];
  t = performance.now();
  for (let i = ops + 1; i <= ops + ops / 4; i++) {
    const t0 = performance.now();
    await store.updateProgress(lease, { step: i });
    await store.appendEvent(lease, stepEvent(i));
    await store.addCheckpoint(lease, { step: i, path: `/ckpt/step-${i}`, final: false });
    await store.appendEvent(lease, { type: 'checkpoint', step: i, path: `/ckpt/step-${i}` });
    step.push(performance.now() - t0);
  }
  const stepS = (performance.now() - t) / 1000;
  return [
    `| ${name} | createJob | ${f1(ops / createS)} | ${f2(percentile(create, 50))} | ${f2(percentile(create, 99))} |`,
    `| ${name} | appendEvent | ${f1(ops / appendS)} | ${f2(percentile(append, 50))} | ${f2(percentile(append, 99))} |`,
    `| ${name} | a checkpointed step (4 writes) | ${f1(step.length / stepS)} | ${f2(percentile(step, 50))} | ${f2(percentile(step, 99))} |`,
  ];
}

// ---- 2, 3. event delivery through replicas ----

interface Replica {
  proc: ChildProcess;
  client: TuningServiceClient;
}

function startReplica(url: string, dataDir: string): Promise<Replica> {
  const proc = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve', '--port', '0', '--database-url', url, '--data-dir', dataDir, '--max-concurrent-jobs', '0', '--log-level', 'warn'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /serving on .*:(\d+)/.exec(err);
      if (m) {
        // One channel per stream would measure connection set-up; real clients share one, as here.
        resolve({ proc, client: new TuningServiceClient(`127.0.0.1:${m[1]}`, grpc.credentials.createInsecure(), { 'grpc.max_concurrent_streams': 1000 }) });
      }
    });
    proc.on('exit', (code) => reject(new Error(`replica exited with ${code}: ${err}`)));
  });
}

interface Delivery {
  latencies: number[];
  delivered: number;
  close(): void;
}

/** `n` streams of each job, round-robin over the replicas; latency = arrival − the event's store time. */
function follow(replicas: Replica[], jobIds: string[], perJob: number, measureFrom: () => number): Delivery {
  const d: Delivery = { latencies: [], delivered: 0, close: () => calls.forEach((c) => c.cancel()) };
  const calls: grpc.ClientReadableStream<StreamMetricsResponse>[] = [];
  let k = 0;
  for (const id of jobIds) {
    for (let i = 0; i < perJob; i++) {
      const call = replicas[k++ % replicas.length]!.client.streamMetrics({ name: `jobs/${id}`, fromSequence: 0 });
      call.on('data', (e: StreamMetricsResponse) => {
        const now = Date.now();
        const at = e.time!.getTime();
        if (at < measureFrom()) return;
        d.delivered++;
        d.latencies.push(now - at);
      });
      call.on('error', () => undefined);
      calls.push(call);
    }
  }
  return d;
}

/**
 * The writer runs in its own process (`--writer`), as a worker would: sharing this process's event loop with 200
 * streams would delay its inserts and the streams' arrivals alike. It creates and claims `jobs` jobs, prints their
 * ids, waits for a line on stdin, appends for `seconds` at `rate` (0: back to back) and prints how many it wrote.
 */
async function writerMain(url: string, jobs: number, seconds: number, rate: number, tag: string): Promise<void> {
  const store = await PostgresJobStore.open(url);
  const leases: Lease[] = [];
  for (let i = 0; i < jobs; i++) {
    await store.createJob({ spec: SPEC, requestId: `${tag}-${i}` });
    leases.push((await store.claimJob({ workerId: `bench-writer-${tag}`, leaseMs: LEASE_MS }))!);
  }
  process.stdout.write(`jobs ${JSON.stringify(leases.map((l) => l.jobId))}\n`);
  await new Promise((r) => process.stdin.once('data', r));
  const written = await write(store, leases, seconds, rate > 0 ? rate : Infinity);
  process.stdout.write(`written ${written}\n`);
  await store.close();
  process.exit(0);
}

interface Writer {
  jobIds: string[];
  go(): Promise<number>;
}

function startWriter(url: string, jobs: number, seconds: number, rate: number, tag: string): Promise<Writer> {
  const proc = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--writer', url, String(jobs), String(seconds), String(rate), tag], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let out = '';
  const lines: ((l: string) => void)[] = [];
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    let i: number;
    while ((i = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, i);
      out = out.slice(i + 1);
      lines.shift()?.(line);
    }
  });
  const next = () => new Promise<string>((r) => lines.push(r));
  return next().then((l) => ({
    jobIds: JSON.parse(l.replace(/^jobs /, '')) as string[],
    go: () => {
      proc.stdin!.write('go\n');
      return next().then((w) => Number(w.replace(/^written /, '')));
    },
  }));
}

/** Appends step events to every lease's job for `seconds`, at `perSecond` in all (Infinity: back to back). */
async function write(store: JobStore, leases: Lease[], seconds: number, perSecond: number): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let written = 0;
  const interval = (leases.length * 1000) / perSecond;
  await Promise.all(
    leases.map(async (lease, j) => {
      let step = (await store.lastSequence(lease.jobId)) + 1;
      let next = performance.now() + (Number.isFinite(interval) ? (j * interval) / leases.length : 0);
      while (performance.now() < end) {
        if (Number.isFinite(interval)) {
          const wait = next - performance.now();
          if (wait > 0) await sleep(wait);
          next += interval;
        }
        await store.appendEvent(lease, stepEvent(step++));
        written++;
      }
    }),
  );
  return written;
}

async function delivery(url: string, dataDir: string, o: { seconds: number; jobs: number; streams: number; rate: number }): Promise<string[]> {
  const replicas = await Promise.all([startReplica(url, dataDir), startReplica(url, dataDir)]);
  const lines: string[] = [];
  const run = async (label: string, on: Replica[], perJob: number, rate: number) => {
    const writer = await startWriter(url, o.jobs, o.seconds, rate, label.replace(/\W+/g, '-'));
    let from = Infinity;
    const d = follow(on, writer.jobIds, perJob, () => from);
    await sleep(2000); // streams open and caught up
    from = Date.now();
    const cpu0 = await Promise.all(on.map((r) => cpuSeconds(r.proc.pid!)));
    const [own0, busy0, t0] = [process.cpuUsage(), machineBusySeconds(), performance.now()];
    const written = await writer.go();
    await sleep(1000); // stragglers
    const cpu = (await Promise.all(on.map((r) => cpuSeconds(r.proc.pid!)))).map((c, i) => c - cpu0[i]!);
    const wall = (performance.now() - t0) / 1000;
    const own = process.cpuUsage(own0);
    const perWall = (c: number) => f2(c / wall);
    d.close();
    lines.push(
      `| ${label} | ${f1(written / o.seconds)} | ${f1(d.delivered / o.seconds)} | ${f1(percentile(d.latencies, 50))} | ${f1(percentile(d.latencies, 99))} | ${cpu.map(perWall).join(' + ')} | ${perWall((own.user + own.system) / 1e6)} | ${perWall(machineBusySeconds() - busy0)} |`,
    );
    if (d.delivered < written * perJob) lines.push(`  (delivered ${d.delivered} of the ${written * perJob} events written in the window)`);
  };
  try {
    // 2. One replica, one stream per job, as fast as the writer goes.
    await run(`1 replica, ${o.jobs} streams, writer flat out`, [replicas[0]!], 1, 0);
    // 3. Two replicas, many streams, a steady rate.
    const perJob = Math.ceil(o.streams / o.jobs);
    await run(`2 replicas, ${perJob * o.jobs} streams (${perJob} per job), ${o.rate} events/s`, replicas, perJob, o.rate);
  } finally {
    for (const r of replicas) {
      r.client.close();
      r.proc.kill('SIGTERM');
    }
  }
  return lines;
}

// ---- 4. claims ----

async function claims(pg: TestPostgres, workers: number, jobs: number, pollMs: number): Promise<string> {
  const url = await pg.createDatabase();
  const admin = await PostgresJobStore.open(url);
  const stores = await Promise.all(Array.from({ length: workers }, () => PostgresJobStore.open(url, { poolSize: 3 })));
  let claimMs: number[] = [];
  const runners = stores.map((store, i) => {
    // Timed at the store: the claim's own round trip, under the other workers' claims.
    const claim = store.claimJob.bind(store);
    store.claimJob = async (opts) => {
      const t0 = performance.now();
      const lease = await claim(opts);
      if (lease) claimMs.push(performance.now() - t0);
      return lease;
    };
    return new JobRunner({
      store,
      dataDir: '/nonexistent',
      maxConcurrentJobs: 1,
      leaseSeconds: 30,
      pollMs,
      workerId: `bench-${i}`,
      // A short "training": one step, then done, so the worker comes back for the next job.
      startProcess: (options, onEvent) => ({
        pid: undefined,
        stop: () => undefined,
        kill: () => undefined,
        done: sleep(50).then(() => {
          onEvent({ ...stepEvent(1), totalSteps: 1 });
          return { out: options.out, receipt: { steps: [{}] }, budgetStop: null } as unknown as TuneResult;
        }),
      }),
    });
  });
  await Promise.all(runners.map((r) => r.begin()));
  const drained = async (n: number) => {
    while ((await admin.countInStates(['SUCCEEDED'])) < n) await sleep(20);
  };
  // A: a burst of jobs at once: the workers drain a queue, every claim racing the others.
  let t0 = performance.now();
  for (let i = 0; i < jobs; i++) await admin.createJob({ spec: SPEC, requestId: `burst-${i}` });
  await drained(jobs);
  const burstJobsPerS = jobs / ((performance.now() - t0) / 1000);
  const burstClaim = claimMs;
  // B: one job at a time, with the workers idle: how long a new job waits for a worker to notice it.
  claimMs = [];
  const idleJobs = Math.max(10, Math.round(jobs / 10));
  const idle: number[] = [];
  for (let i = 0; i < idleJobs; i++) {
    // At a random moment: the polls tick at a fixed phase, and so would a job created right after the last one ended.
    await sleep(Math.random() * pollMs);
    const { job } = await admin.createJob({ spec: SPEC, requestId: `idle-${i}` });
    await drained(jobs + i + 1);
    idle.push((await admin.getJob(job.id))!.startTime! - job.createTime);
  }
  await Promise.all(runners.map((r) => r.shutdown()));
  await Promise.all([admin, ...stores].map((s) => s.close()));
  return `| ${workers} | ${jobs} | ${f1(burstJobsPerS)} | ${f2(percentile(burstClaim, 50))} | ${f2(percentile(burstClaim, 99))} | ${f1(percentile(idle, 50))} | ${f1(percentile(idle, 99))} |`;
}

// ---- main ----

async function main(argv: string[]): Promise<void> {
  if (argv[0] === '--writer') {
    const [url, jobs, seconds, rate, tag] = argv.slice(1);
    return writerMain(url!, Number(jobs), Number(seconds), Number(rate), tag!);
  }
  if (argv.includes('--help')) {
    process.stdout.write(SCALE_HELP);
    return;
  }
  const f = parseFlags(argv, {
    seconds: { type: 'string' },
    jobs: { type: 'string' },
    streams: { type: 'string' },
    rate: { type: 'string' },
    ops: { type: 'string' },
    'claim-jobs': { type: 'string' },
    'poll-ms': { type: 'string' },
    phases: { type: 'string' },
  });
  const phases = new Set((typeof f.phases === 'string' ? f.phases : 'store,delivery,claims').split(','));
  const o = {
    seconds: int(f, 'seconds') ?? 10,
    jobs: int(f, 'jobs') ?? 20,
    streams: int(f, 'streams') ?? 200,
    rate: int(f, 'rate') ?? 400,
    ops: int(f, 'ops') ?? 1000,
    claimJobs: int(f, 'claim-jobs') ?? 200,
    pollMs: int(f, 'poll-ms') ?? 1000,
  };
  const dir = await mkdtemp(join(tmpdir(), 'nt-bench-scale-'));
  const pg = await startPostgres();
  const out = (s: string) => process.stdout.write(`${s}\n`);
  try {
    out(`PostgreSQL started in ${f1(pg.startMs)} ms (fsync off, as in the tests)\n`);
    if (phases.has('store')) {
      out('## Store cost, one caller\n');
      out('| store | operation | per second | p50 ms | p99 ms |');
      out('| --- | --- | --- | --- | --- |');
      const sqlite = SqliteJobStore.open(join(dir, 'sqlite'));
      for (const l of await storeCost('SQLite', sqlite, o.ops)) out(l);
      await sqlite.close();
      const pgStore = await PostgresJobStore.open(await pg.createDatabase());
      for (const l of await storeCost('PostgreSQL', pgStore, o.ops)) out(l);
      await pgStore.close();
    }

    if (phases.has('delivery')) {
      out('\n## Event delivery: insert by a worker to arrival at a StreamMetrics client\n');
      out(`| setup | inserted/s | delivered/s | p50 ms | p99 ms | replica CPUs | clients' CPUs | machine busy CPUs (of ${availableParallelism()}) |`);
      out('| --- | --- | --- | --- | --- | --- | --- | --- |');
      for (const l of await delivery(await pg.createDatabase(), join(dir, 'shared'), o)) out(l);
    }

    if (phases.has('claims')) {
      out('\n## Claims\n');
      out(`| workers | burst of jobs | drained jobs/s | claimJob p50 ms | claimJob p99 ms | idle pickup p50 ms (poll ${o.pollMs} ms) | p99 ms |`);
      out('| --- | --- | --- | --- | --- | --- | --- |');
      for (const w of [2, 8]) out(await claims(pg, w, o.claimJobs, o.pollMs));
    }
  } finally {
    await pg.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main(process.argv.slice(2));
