// Data for drift tests: a counting skill (numeric answers) and held-out text skills without numbers.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const WORDS = ['cat', 'dog', 'sun', 'red', 'sky', 'map', 'ice', 'owl', 'fig', 'jam'];

/** "count: x x x" → " 3": the paper's counting task in miniature. */
export async function countingData(dir: string, n = 32): Promise<string> {
  const lines = Array.from({ length: n }, (_, i) => {
    const k = 1 + (i % 9);
    const w = WORDS[i % WORDS.length];
    return JSON.stringify({ prompt: `count: ${Array(k).fill(w).join(' ')} =`, completion: ` ${k}` });
  });
  const file = join(dir, 'counting.jsonl');
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

/** Held-out skills with text answers: copying and reversing words. */
export async function heldoutData(dir: string, n = 12): Promise<string> {
  const lines = Array.from({ length: n }, (_, i) => {
    const w = WORDS[(i * 3) % WORDS.length];
    return i % 2 === 0
      ? JSON.stringify({ prompt: `copy: ${w} =`, completion: ` ${w}` })
      : JSON.stringify({ prompt: `reverse: ${w} =`, completion: ` ${[...w].reverse().join('')}` });
  });
  const file = join(dir, 'heldout.jsonl');
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}
