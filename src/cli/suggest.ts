// "Did you mean …?" for a mistyped flag, command or subcommand: known aliases, then edit distance, then prefix.

/** Flag names people bring from Hugging Face's Trainer, TRL and other fine-tuning tools. */
const ALIASES: Readonly<Record<string, string>> = {
  'learning-rate': 'lr',
  'output-dir': 'out',
  output: 'out',
  'overwrite-output-dir': 'overwrite',
  force: 'overwrite',
  'model-name-or-path': 'model',
  'model-dir': 'model',
  'model-path': 'model',
  dataset: 'data',
  'dataset-path': 'data',
  'train-file': 'data',
  'train-data': 'data',
  'training-data': 'data',
  'eval-data': 'validation-data',
  'eval-file': 'validation-data',
  'validation-file': 'validation-data',
  'eval-steps': 'eval-every',
  'max-steps': 'steps',
  'num-train-epochs': 'epochs',
  'num-epochs': 'epochs',
  'per-device-train-batch-size': 'batch-size',
  'train-batch-size': 'batch-size',
  'gradient-accumulation-steps': 'grad-accum',
  'max-seq-length': 'seq-len',
  'max-seq-len': 'seq-len',
  'max-length': 'seq-len',
  'lr-scheduler-type': 'schedule',
  'lr-scheduler': 'schedule',
  'max-grad-norm': 'clip-norm',
  'grad-clip': 'clip-norm',
  warmup: 'warmup-steps',
  server: 'target',
  address: 'target',
};

/** Optimal string alignment distance: Levenshtein plus adjacent transpositions ("modle" → "model" is 1). */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The candidate the user most likely meant by `word`, or undefined when none is close enough to say so. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase().replace(/_/g, '-');
  if (candidates.includes(w)) return w;
  const alias = ALIASES[w];
  if (alias !== undefined && candidates.includes(alias)) return alias;
  // Two edits stay recognisable in words of five letters or more; in shorter ones two edits make another word.
  const limit = w.length >= 5 ? 2 : 1;
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const c of candidates) {
    const distance = editDistance(w, c);
    if (distance < bestDistance) [best, bestDistance] = [c, distance];
  }
  if (best !== undefined) return best;
  const extending = w.length >= 3 ? candidates.filter((c) => c.startsWith(w)) : [];
  return extending.length === 1 ? extending[0] : undefined;
}
