// `narrowtune serve --help`, apart from the command so that printing it loads neither gRPC nor OpenTelemetry.
import { DEFAULT_LEASE_SECONDS } from '../runner/lease-defaults.js';
import { RATE_LIMIT_DEFAULTS } from '../service/rate-limit.js';
import { SERVER_DEFAULTS } from '../service/server-defaults.js';
import { DEFAULT_PROMETHEUS_HOST } from '../telemetry/otel-env.js';
import { DATABASE_URL_HELP } from './database-url.js';

export const SERVE_HELP = `Usage: narrowtune serve [options]

Runs the narrowtune.v1.TuningService gRPC server (with grpc.health.v1 and server reflection).
Jobs, metric events and checkpoints live in --data-dir (SQLite + files); jobs that were running when
the server stopped resume from their last checkpoint on the next start. With --database-url the job
store is PostgreSQL, shared with other \`serve\` replicas and \`narrowtune worker\` processes that mount
the same --data-dir: \`--max-concurrent-jobs 0\` makes this server an API replica that trains nothing.

  --host H                 address to listen on (default ${SERVER_DEFAULTS.host})
  --port P                 port (default ${SERVER_DEFAULTS.port}; 0 picks a free one)
  --data-dir DIR           job store and job outputs (default ./narrowtune-data); with --database-url,
                           job outputs and checkpoints only, on storage every replica and worker mounts
                           at the same path
${DATABASE_URL_HELP}
  --max-concurrent-jobs N  jobs training at once, each in its own process (default ${SERVER_DEFAULTS.maxConcurrentJobs}; 0: none,
                           an API replica whose jobs \`narrowtune worker\` processes train)
  --max-queued-jobs N      pending jobs before StartTune answers RESOURCE_EXHAUSTED (default ${SERVER_DEFAULTS.maxQueuedJobs})
  --checkpoint-every N     default step-checkpoint interval for jobs (default ${SERVER_DEFAULTS.checkpointEvery})
  --model-root DIR         directory requests may read models from (repeatable; default the data dir
                           and the working directory)
  --data-root DIR          directory requests may read datasets from (repeatable; same default)
  --tls-cert FILE          serve TLS with this PEM certificate (chain) ...
  --tls-key FILE           ... and its PEM private key
  --tls-client-ca FILE     mutual TLS: refuse clients without a certificate signed by this PEM CA
  --auth none|api-key      api-key: callers send "authorization: Bearer <key>", keys made by
                           \`narrowtune keys create\` in the same store (--database-url, else --data-dir;
                           default api-key, except on a loopback --host: none)
  --tenant-max-running N   jobs of one tenant training at once; its others wait (default: no limit).
                           Counted in the store across machines; each process that claims jobs (this
                           one, each \`narrowtune worker\`) applies its own value: give them all the same
  --lease-seconds N        a running job's lease: renewed every N/3 s while it trains; when its process
                           dies without a word, the job waits this long before it resumes (default ${DEFAULT_LEASE_SECONDS})
  --threads N              onnxruntime intra-op threads of each training job (default: onnxruntime's own
                           pool, which on some VMs runs as one thread: set it to the cores and measure);
                           with several jobs at once, jobs × N at most the cores
  --feature-cache DIR      keep LLaVA images' vision features in DIR for later jobs and Evaluate calls,
                           in a subdirectory per tenant (DIR/tenants/NAME) (default: memory only)
  --tenant-max-queued N    pending jobs of one tenant before its StartTune answers RESOURCE_EXHAUSTED
                           (default: no limit)
  --rate-limit-start N     StartTune calls per minute per API key, in bursts of up to N; over it the call
                           answers RESOURCE_EXHAUSTED with RetryInfo (default ${RATE_LIMIT_DEFAULTS.startTunePerMinute}; 0: no limit;
                           without authentication all callers share one allowance)
  --rate-limit-evaluate N  the same for Evaluate (default ${RATE_LIMIT_DEFAULTS.evaluatePerMinute})
  --allow-insecure         listen beyond loopback without TLS or authentication (for a sidecar or mesh
                           that terminates TLS); without it such a server refuses to start
  --http-port P            also serve the web port: the dashboard at http(s)://HOST:P/, and the same
                           service over Connect (JSON or binary; curl works) and gRPC-Web, with the same
                           authentication and TLS (off by default; 0 picks a free port)
  --http-host H            address of the web port (default: --host)
  --cors-origin ORIGIN     let pages from ORIGIN (e.g. https://grafana.example.com, or *) call the web
                           port's API (repeatable; default none: only the dashboard's own page)
  --prometheus-port P      serve OpenTelemetry metrics for Prometheus at http://HOST:P/metrics
  --prometheus-host H      address of the metrics endpoint (default ${DEFAULT_PROMETHEUS_HOST})
  --log-level L            trace | debug | info (default) | warn | error | silent: JSON lines on stderr,
                           one per RPC (method, code, ms, key id, tenant; never a secret or a request
                           body) and per job event (created, started, resumed, checkpoint, cancel, finished)

Plaintext without authentication is for loopback only: on any other --host the server needs TLS
(--tls-cert, --tls-key) and authenticated callers (API keys, or client certificates with --tls-client-ca),
or --allow-insecure.

OpenTelemetry is off unless configured: the standard OTEL_* variables (e.g. OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER, OTEL_SERVICE_NAME) or --prometheus-port turn it on.
Metrics are named narrowtune.* (loss, learning rate, grad norm, tokens/s, drift figures, jobs finished)
with the base model and policy as attributes; RPCs and job phases are traced.
`;
