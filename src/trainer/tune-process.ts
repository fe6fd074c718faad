// Child-process entry for one job: a crash in native code (onnxruntime) takes down this process, not
// the server. Talks to the parent over the IPC channel.
import { serializeError } from '../util/errors.js';
import type { TuneOptions } from './options.js';
import { TrainingStopped, tune } from './trainer.js';

type ParentMessage = { type: 'start'; options: TuneOptions } | { type: 'stop'; reason: 'cancel' | 'shutdown' };

if (!process.send) throw new Error('tune-process must be started with an IPC channel (child_process.fork)');
const send = (m: unknown) => process.send?.(m);
const controller = new AbortController();
let finished = false;
/** The last message; the channel closes once it is out, and then the process exits by itself. */
const sendLast = (m: unknown) => {
  finished = true;
  process.send?.(m, () => process.disconnect?.());
};

process.on('message', (m: ParentMessage) => {
  if (m.type === 'stop') controller.abort(m.reason);
  else if (m.type === 'start') {
    tune(m.options, (event) => send({ type: 'event', event }), controller.signal)
      .then((result) => sendLast({ type: 'result', result }))
      .catch((error: unknown) =>
        sendLast({ type: 'error', error: serializeError(error), stopped: error instanceof TrainingStopped ? { reason: error.reason, step: error.step } : null }),
      );
  }
});
// SIGTERM (e.g. from a process manager) stops at the next step boundary with a checkpoint.
process.on('SIGTERM', () => controller.abort('shutdown'));
// A parent that died without a word (kill -9) will resume the job from the last checkpoint when it
// restarts; carrying on here would race with that, so stop at once.
process.on('disconnect', () => {
  if (!finished && !controller.signal.aborted) process.exit(1);
});
