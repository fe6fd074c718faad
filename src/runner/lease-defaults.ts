// The runner's lease default, apart from job-runner.ts so that `serve --help` and `worker --help` can show it
// without loading the trainer.

/** How long a job's lease holds without a heartbeat; a dead worker's jobs wait this long for another worker. */
export const DEFAULT_LEASE_SECONDS = 30;
