// Matches client-sent regular expressions against names in a worker thread with a deadline. A pattern such as
// `^(.|.)*X$` backtracks for hours on a 40-character tensor name; matched on the server's own thread it would stop
// every RPC. Only patterns that finish here are then used on the server's thread.
import { Worker } from 'node:worker_threads';

/** Time all patterns together may take to match every name, once the worker runs. */
export const PATTERN_DEADLINE_MS = 250;

// Plain CommonJS with no imports: starts in milliseconds, from sources or a build alike. Compiles patterns as
// policy.ts does (no flags); patterns that do not compile are left to policy.ts to report.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
parentPort.postMessage({ running: -1 });
workerData.patterns.forEach((p, i) => {
  parentPort.postMessage({ running: i });
  let re;
  try { re = new RegExp(p); } catch { return; }
  for (const name of workerData.names) re.test(name);
});
parentPort.postMessage({ done: true });
`;

/**
 * Resolves to null when every pattern matched every name within the deadline, else to the index of the
 * pattern that was still running when it passed (the worker is then terminated).
 */
export function slowPattern(patterns: readonly string[], names: readonly string[], deadlineMs = PATTERN_DEADLINE_MS): Promise<number | null> {
  if (patterns.length === 0) return Promise.resolve(null);
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { patterns, names } });
  return new Promise((resolve, reject) => {
    let running = -1;
    let timer: NodeJS.Timeout | undefined;
    const finish = (result: number | null) => {
      clearTimeout(timer);
      void worker.terminate();
      resolve(result);
    };
    worker.on('message', (m: { running?: number; done?: boolean }) => {
      if (m.done) return finish(null);
      // The clock starts once the worker is up, so a busy machine's thread start-up is not charged to the patterns.
      if (m.running === -1) timer = setTimeout(() => finish(Math.max(running, 0)), deadlineMs);
      else running = m.running!;
    });
    worker.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
