// `npm run bench -- [flags]`: the same benchmark as `narrowtune bench` (src/cli/bench-command.ts), from the sources.
import { CHILD_ENV } from '../src/bench/row-process.js';
import { BENCH_HELP, benchCommand } from '../src/cli/bench-command.js';
import { NarrowtuneError } from '../src/util/errors.js';

// Bundled into one file (bench/gpu-pack.sh), this module is also the row processes' entry point; there
// src/bench/row-process.ts answers the parent and this module must stay quiet.
if (process.env[CHILD_ENV] !== '1') {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(BENCH_HELP);
  } else {
    try {
      await benchCommand(argv);
    } catch (e) {
      process.stderr.write(`narrowtune bench: ${e instanceof NarrowtuneError ? e.message : ((e as Error).stack ?? String(e))}\n`);
      process.exitCode = e instanceof NarrowtuneError && e.kind === 'invalid_argument' ? 2 : 1;
    }
  }
}
