// The `narrowtune` command: dispatches subcommands and turns domain errors into one-line messages.
import { readFileSync } from 'node:fs';
import { NarrowtuneError } from '../util/errors.js';
import { INIT_MODEL_HELP, initModelCommand } from './init-model-command.js';
import { BENCH_HELP, benchCommand } from './bench-command.js';
import { DEMO_HELP, demoCommand } from './demo-command.js';
import { HEALTH_HELP, healthCommand } from './health-command.js';
import { JOBS_HELP, jobsCommand } from './jobs-command.js';
import { SERVE_HELP, serveCommand } from './serve-command.js';
import { TUNE_HELP, tuneCommand } from './tune-command.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const HELP = `narrowtune ${VERSION} — fine-tune language models without making them forget

Usage: narrowtune <command> [options]

Commands:
  tune          fine-tune a Hugging Face checkpoint under a freezing policy (default: MLP gate/up
                projections, down projection frozen)
  init-model    write a random-initialised Hugging Face model (tests, demos, benchmarks)
  serve         run the gRPC service (StartTune, StreamMetrics, Evaluate, …)
  jobs          start, get, list, cancel and watch jobs on a running server
  health        check a server's grpc.health.v1 status (exit 0 when SERVING)
  demo          reproduce the paper's learning-versus-forgetting result on a shipped model
  bench         step time, tokens/s, memory and session build per model size and policy (--vs-torch)

Run \`narrowtune <command> --help\` for a command's options.
`;

const COMMANDS: Record<string, { help: string; run: (argv: string[]) => Promise<void> }> = {
  tune: { help: TUNE_HELP, run: tuneCommand },
  'init-model': { help: INIT_MODEL_HELP, run: initModelCommand },
  serve: { help: SERVE_HELP, run: serveCommand },
  jobs: { help: JOBS_HELP, run: jobsCommand },
  health: { help: HEALTH_HELP, run: healthCommand },
  demo: { help: DEMO_HELP, run: demoCommand },
  bench: { help: BENCH_HELP, run: benchCommand },
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
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`narrowtune: unknown command "${name}"; commands: ${Object.keys(COMMANDS).join(', ')}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(command.help);
    return 0;
  }
  try {
    await command.run(rest);
    return 0;
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
