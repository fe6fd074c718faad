// `narrowtune merge`: WiSE-FT interpolation of a base and a tuned model (src/model/merge.ts).
import { alphaViolation, mergeModels } from '../model/merge.js';
import { invalidArgument } from '../util/errors.js';
import { num, parseFlags, required } from './args.js';
import { checkOut } from './tune-command.js';

export async function mergeCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, {
    base: { type: 'string' },
    tuned: { type: 'string' },
    alpha: { type: 'string' },
    out: { type: 'string' },
    overwrite: { type: 'boolean' },
  });
  const base = required(f, 'base');
  const tuned = required(f, 'tuned');
  required(f, 'alpha');
  const alpha = num(f, 'alpha')!;
  const bad = alphaViolation(alpha);
  if (bad) throw invalidArgument('--alpha', bad);
  const out = required(f, 'out');
  await checkOut(out, f.overwrite === true);
  const { receipt } = await mergeModels({ base, tuned, alpha, out });
  process.stderr.write(`wrote ${out}: ${receipt.interpolated} of ${receipt.tensors} tensors interpolated at alpha ${alpha}\n`);
}
