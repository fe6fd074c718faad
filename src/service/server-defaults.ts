// The server's defaults, apart from server.ts so that `narrowtune … --help` can show them without loading gRPC.

export const SERVER_DEFAULTS = {
  host: '127.0.0.1',
  port: 50051,
  maxConcurrentJobs: 1,
  maxQueuedJobs: 100,
  checkpointEvery: 50,
};

/** Where a client looks for a server started with the defaults. */
export const DEFAULT_TARGET = `${SERVER_DEFAULTS.host}:${SERVER_DEFAULTS.port}`;
