// The `narrowtune` command: dispatches subcommands and turns domain errors into one-line messages.
// A command's modules load only when it runs, so help, version and typos answer without loading ONNX Runtime,
// gRPC or OpenTelemetry.
import { readFileSync } from 'node:fs';
import { NarrowtuneError } from '../util/errors.js';
import { closest } from './suggest.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const HELP = `narrowtune ${VERSION} — fine-tune language models without making them forget

Usage: narrowtune <command> [options]

Commands:
  tune          fine-tune a Hugging Face checkpoint under a freezing policy (default: MLP gate/up
                projections, down projection frozen)
  evaluate      score a model (and its base) on datasets here: accuracy, drift, Δ learning / forgetting
  init-model    write a random-initialised Hugging Face model (tests, demos, benchmarks)
  serve         run the gRPC service (StartTune, StreamMetrics, Evaluate, …)
  worker        train the jobs of a job store that \`serve\` replicas share (PostgreSQL: many machines)
  jobs          start, get, list, cancel and watch jobs on a running server
  keys          create, list and revoke the API keys (tenants, roles) of a server's job store
  health        check a server's grpc.health.v1 status (exit 0 when SERVING)
  merge         WiSE-FT: interpolate a base and a tuned model (or base + LoRA adapter) tensor by tensor
  demo          reproduce the paper's learning-versus-forgetting result on a shipped model
  bench         step time, tokens/s, memory and session build per model size and policy (--vs-torch)

Run \`narrowtune <command> --help\` for a command's options.
`;

/** A command's run function returns its exit code when that is not simply "done" (0). */
type Run = (argv: string[]) => Promise<number | void>;

const COMMANDS: Record<string, { help: () => Promise<string>; run: () => Promise<Run> }> = {
  tune: {
    help: async () => (await import('./tune-help.js')).TUNE_HELP,
    run: async () => (await import('./tune-command.js')).tuneCommand,
  },
  evaluate: {
    help: async () => (await import('./evaluate-help.js')).EVALUATE_HELP,
    run: async () => (await import('./evaluate-command.js')).evaluateCommand,
  },
  'init-model': {
    help: async () => (await import('./init-model-help.js')).INIT_MODEL_HELP,
    run: async () => (await import('./init-model-command.js')).initModelCommand,
  },
  serve: {
    help: async () => (await import('./serve-help.js')).SERVE_HELP,
    run: async () => (await import('./serve-command.js')).serveCommand,
  },
  worker: {
    help: async () => (await import('./worker-help.js')).WORKER_HELP,
    run: async () => (await import('./worker-command.js')).workerCommand,
  },
  jobs: {
    help: async () => (await import('./jobs-help.js')).JOBS_HELP,
    run: async () => (await import('./jobs-command.js')).jobsCommand,
  },
  keys: {
    help: async () => (await import('./keys-help.js')).KEYS_HELP,
    run: async () => (await import('./keys-command.js')).keysCommand,
  },
  health: {
    help: async () => (await import('./health-help.js')).HEALTH_HELP,
    run: async () => (await import('./health-command.js')).healthCommand,
  },
  merge: {
    help: async () => (await import('./merge-help.js')).MERGE_HELP,
    run: async () => (await import('./merge-command.js')).mergeCommand,
  },
  demo: {
    help: async () => (await import('./demo-help.js')).DEMO_HELP,
    run: async () => (await import('./demo-command.js')).demoCommand,
  },
  // The benchmark keeps its help in its own module: `bench --help` loads the benchmark.
  bench: {
    help: async () => (await import('./bench-command.js')).BENCH_HELP,
    run: async () => (await import('./bench-command.js')).benchCommand,
  },
};

/** Exit codes: 0 done, 1 failed, 2 bad usage (arguments, files, patterns). */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    const guess = closest(name, Object.keys(COMMANDS));
    process.stderr.write(`narrowtune: unknown command "${name}"${guess ? `; did you mean "${guess}"?` : ''} (commands: ${Object.keys(COMMANDS).join(', ')})\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(await command.help());
    return 0;
  }
  try {
    const run = await command.run();
    return (await run(rest)) ?? 0;
  } catch (e) {
    if (e instanceof NarrowtuneError) {
      process.stderr.write(`narrowtune ${name}: ${e.message}\n`);
      return e.kind === 'invalid_argument' ? 2 : 1;
    }
    process.stderr.write(`narrowtune ${name}: ${(e as Error).stack ?? String(e)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
