// Child-process entry for one job (see run-in-process.ts): a crash in native code (onnxruntime) takes down
// this process, not the server.
import type { TrainEvent } from './events.js';
import type { TuneOptions } from './options.js';
import { serveParent } from './run-in-process.js';
import { tune, type TuneResult } from './trainer.js';

serveParent<TuneOptions, TrainEvent, TuneResult>((options, emit, signal) => tune(options, emit, signal));
