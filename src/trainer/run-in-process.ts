// Runs one fine-tune in its own child process (see tune-process.ts) and relays its events.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { deserializeError } from '../util/errors.js';
import type { TuneOptions } from './options.js';
import { TrainingStopped, type TrainEvent, type TuneResult } from './trainer.js';

export interface TuneProcess {
  pid: number | undefined;
  /** Resolves with the result; rejects with the job's error, TrainingStopped, or a crash of the process. */
  done: Promise<TuneResult>;
  /** Asks the trainer to stop at the next step boundary, after a checkpoint. */
  stop(reason: 'cancel' | 'shutdown'): void;
  kill(): void;
}

/** From sources (tests, a checkout) the child loads tsx; the built package runs plain JS. */
function entry(): { path: string; execArgv: string[] } {
  const fromSource = import.meta.url.endsWith('.ts');
  return {
    path: fileURLToPath(new URL(`./tune-process.${fromSource ? 'ts' : 'js'}`, import.meta.url)),
    execArgv: fromSource ? ['--import', import.meta.resolve('tsx')] : [],
  };
}

export function tuneInProcess(options: TuneOptions, onEvent: (e: TrainEvent) => void): TuneProcess {
  const { path, execArgv } = entry();
  const child: ChildProcess = fork(path, [], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
  const done = new Promise<TuneResult>((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void) => {
      if (!settled) {
        settled = true;
        fn();
      }
    };
    child.on('message', (m: { type: string; event?: TrainEvent; result?: TuneResult; error?: unknown; stopped?: { reason: 'cancel' | 'shutdown'; step: number } | null }) => {
      if (m.type === 'event') onEvent(m.event!);
      else if (m.type === 'result') settle(() => resolve(m.result!));
      else if (m.type === 'error') {
        const stopped = m.stopped;
        settle(() => reject(stopped ? new TrainingStopped(stopped.reason, stopped.step) : deserializeError(m.error)));
      }
    });
    child.on('error', (e) => settle(() => reject(e)));
    child.on('exit', (code, signal) =>
      settle(() => reject(new Error(`training process exited (${signal ?? `code ${code}`}) before finishing`))),
    );
  });
  child.send({ type: 'start', options });
  return {
    pid: child.pid,
    done,
    stop: (reason) => {
      if (child.connected) child.send({ type: 'stop', reason });
    },
    kill: () => child.kill('SIGKILL'),
  };
}
