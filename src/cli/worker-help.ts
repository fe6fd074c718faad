// `narrowtune worker --help`, apart from the command so that printing it opens no database and loads no trainer.
import { DEFAULT_LEASE_SECONDS } from '../runner/lease-defaults.js';
import { DEFAULT_PROMETHEUS_HOST } from '../telemetry/otel-env.js';
import { DATABASE_URL_HELP } from './database-url.js';

export const WORKER_DEFAULTS = { maxConcurrentJobs: 1, pollMs: 1000, healthHost: '127.0.0.1' };

export const WORKER_HELP = `Usage: narrowtune worker [--database-url URL] [--data-dir DIR] [options]

Trains the jobs that \`narrowtune serve\` replicas accept, from the job store they share: claims pending
jobs with a lease, renews it while each trains (a process per job), and writes their events, checkpoints
and results to the store and their files under --data-dir. Run as many workers, on as many machines, as
you like; a job trains in one place at a time.

When a worker dies (kill -9, power loss, a partition), its jobs' leases expire after --lease-seconds and
other workers resume them from their last step checkpoint; a worker that lost a lease while paused or cut
off has its writes refused. SIGTERM or SIGINT: running jobs checkpoint, their leases are released so
another worker continues them at once, and the worker exits 0.

${DATABASE_URL_HELP}
  --data-dir DIR           job outputs and step checkpoints: storage every replica and worker mounts at
                           the same path (NFS, EFS, a volume); the SQLite store too without --database-url
                           (default ./narrowtune-data)
  --max-concurrent-jobs N  jobs training at once, each in its own process (default ${WORKER_DEFAULTS.maxConcurrentJobs})
  --lease-seconds N        how long a claim holds without a renewal (renewed every N/3 s): after this
                           worker dies, its jobs wait this long for another (default ${DEFAULT_LEASE_SECONDS})
  --threads N              onnxruntime intra-op threads of each training job (default: onnxruntime's own
                           pool, which on some VMs runs as one thread: set it to the cores and measure);
                           with several jobs at once, jobs × N at most the cores
  --feature-cache DIR      keep LLaVA images' vision features in DIR for later jobs, in a subdirectory
                           per tenant (DIR/tenants/NAME) (default: memory only)
  --tenant-max-running N   jobs of one tenant training at once, counted in the store across every worker;
                           a worker skips a tenant at its limit (default: no limit; give every worker and
                           training \`serve\` the same value)
  --poll-ms N              how often an idle worker looks for pending jobs (default ${WORKER_DEFAULTS.pollMs})
  --health-port P          serve GET /healthz (200 while the job store answers, else 503; JSON: worker id,
                           running jobs) for a process manager's probes (default: off; 0 picks a free port)
  --health-host H          address of /healthz (default ${WORKER_DEFAULTS.healthHost})
  --prometheus-port P      serve its jobs' OpenTelemetry metrics for Prometheus at http://HOST:P/metrics
  --prometheus-host H      address of the metrics endpoint (default ${DEFAULT_PROMETHEUS_HOST})
  --log-level L            trace | debug | info (default) | warn | error | silent: JSON lines on stderr, one
                           per job event (started, resumed, checkpoint, lease lost, released, finished)

The models and datasets that jobs name must be readable at the same paths on every worker.
`;
