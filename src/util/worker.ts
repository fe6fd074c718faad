// Starts a worker thread on a module beside the caller, from sources or from the build alike.
import { Worker } from 'node:worker_threads';
import { disableOrtTelemetry } from './ort-telemetry.js';

/**
 * Starts a worker on the sibling module `name` of `base` (the caller's import.meta.url). From sources (tests, a
 * checkout without a build) the worker first registers tsx's loader, which `execArgv: ['--import', 'tsx']` does
 * not do for workers on Node 20.
 */
export function startWorker(name: string, base: string, workerData: unknown): Worker {
  disableOrtTelemetry(); // the worker may make sessions, and only this thread's environment reaches onnxruntime
  if (!base.endsWith('.ts')) return new Worker(new URL(`./${name}.js`, base), { workerData });
  const api = import.meta.resolve('tsx/esm/api');
  const entry = new URL(`./${name}.ts`, base).href;
  const boot = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(boot, { eval: true, workerData });
}
