// Runs work in its own child process and relays its events: one fine-tune (tune-process.ts) or one benchmark
// row (src/bench/row-process.ts). A crash in native code (onnxruntime) takes down that process, not its parent,
// and a process per run keeps peak memory and onnxruntime state the run's own.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { deserializeError, serializeError } from '../util/errors.js';
import type { TrainEvent } from './events.js';
import type { TuneOptions } from './options.js';
import { TrainingStopped, type TuneResult } from './trainer.js';

type StopReason = 'cancel' | 'shutdown';
type ParentMessage<Req> = { type: 'start'; request: Req } | { type: 'stop'; reason: StopReason };
type ChildMessage<Ev, Res> =
  | { type: 'event'; event: Ev }
  | { type: 'result'; result: Res }
  | { type: 'error'; error: ReturnType<typeof serializeError>; stopped: { reason: StopReason; step: number } | null };

export interface ChildRun<Res> {
  pid: number | undefined;
  /** Resolves with the result; rejects with the run's error, TrainingStopped, or a crash of the process. */
  done: Promise<Res>;
  /** Asks the child to stop at the next step boundary, after a checkpoint. */
  stop(reason: StopReason): void;
  kill(): void;
}

export type TuneProcess = ChildRun<TuneResult>;

export interface ProcessEntry {
  path: string;
  execArgv: string[];
}

/** The module at `url` as a child's entry: from sources (tests, a checkout) the child loads tsx first. */
export function processEntry(url: string): ProcessEntry {
  return { path: fileURLToPath(url), execArgv: url.endsWith('.ts') ? ['--import', import.meta.resolve('tsx')] : [] };
}

export interface RunInProcessOptions {
  env?: NodeJS.ProcessEnv;
  /** What the process is, for the error when it dies without an answer. */
  name?: string;
}

/** Forks `entry`, which answers with serveParent, and sends it `request`. */
export function runInProcess<Req, Ev, Res>(entry: ProcessEntry, request: Req, onEvent: (e: Ev) => void, opts: RunInProcessOptions = {}): ChildRun<Res> {
  const child = fork(entry.path, [], { execArgv: entry.execArgv, env: opts.env ?? process.env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
  const done = new Promise<Res>((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void) => {
      if (!settled) {
        settled = true;
        fn();
      }
    };
    child.on('message', (m: ChildMessage<Ev, Res>) => {
      if (m.type === 'event') onEvent(m.event);
      else if (m.type === 'result') settle(() => resolve(m.result));
      else if (m.type === 'error') {
        const stopped = m.stopped;
        settle(() => reject(stopped ? new TrainingStopped(stopped.reason, stopped.step) : deserializeError(m.error)));
      }
    });
    child.on('error', (e) => settle(() => reject(e)));
    child.on('exit', (code, signal) =>
      settle(() => reject(new Error(`${opts.name ?? 'child process'} exited (${signal ?? `code ${code}`}) before finishing`))),
    );
  });
  child.send({ type: 'start', request } satisfies ParentMessage<Req>);
  return {
    pid: child.pid,
    done,
    stop: (reason) => {
      if (child.connected) child.send({ type: 'stop', reason } satisfies ParentMessage<Req>);
    },
    kill: () => child.kill('SIGKILL'),
  };
}

export function tuneInProcess(options: TuneOptions, onEvent: (e: TrainEvent) => void): TuneProcess {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  return runInProcess(processEntry(new URL(`./tune-process.${ext}`, import.meta.url).href), options, onEvent, { name: 'training process' });
}

/**
 * The child's half: runs `work` on the parent's request and reports its events, result or error. A stop
 * request or SIGTERM (a process manager) aborts `signal`: the trainer stops at the next step boundary with a
 * checkpoint. A parent that died without a word (kill -9) will resume the job from the last checkpoint when
 * it restarts; carrying on here would race with that, so the child exits at once.
 */
export function serveParent<Req, Ev, Res>(work: (request: Req, emit: (e: Ev) => void, signal: AbortSignal) => Promise<Res>): void {
  if (!process.send) throw new Error('this module must be started with an IPC channel (child_process.fork)');
  const send = (m: ChildMessage<Ev, Res>) => process.send?.(m);
  const controller = new AbortController();
  let finished = false;
  /** The last message; the channel closes once it is out, and then the process exits by itself. */
  const sendLast = (m: ChildMessage<Ev, Res>) => {
    finished = true;
    process.send?.(m, () => process.disconnect?.());
  };
  process.on('message', (m: ParentMessage<Req>) => {
    if (m.type === 'stop') controller.abort(m.reason);
    else if (m.type === 'start') {
      work(m.request, (event) => send({ type: 'event', event }), controller.signal)
        .then((result) => sendLast({ type: 'result', result }))
        .catch((error: unknown) =>
          sendLast({ type: 'error', error: serializeError(error), stopped: error instanceof TrainingStopped ? { reason: error.reason, step: error.step } : null }),
        );
    }
  });
  process.on('SIGTERM', () => controller.abort('shutdown'));
  process.on('disconnect', () => {
    if (!finished && !controller.signal.aborted) process.exit(1);
  });
}
