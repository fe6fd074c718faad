// The hostile-input corpus: files under corpus/ (malformed JSONL, truncated and lying safetensors, broken
// config.json and tokenizer.json, pathological regular expressions) plus the cases too big to keep in git, made
// at test time (100,000-deep JSON, 4,000-character fields, a 1 MiB line). Each case becomes RPCs against a real
// server in corpus.test.ts.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CORPUS_DIR = fileURLToPath(new URL('./corpus', import.meta.url));

/** Which file of a valid model a model case replaces. */
export const MODEL_FILES = { safetensors: 'model.safetensors', config: 'config.json', tokenizer: 'tokenizer.json' } as const;
export type ModelPart = keyof typeof MODEL_FILES;

export interface FileCase {
  name: string;
  bytes: Uint8Array;
}

/** Nesting deep enough to overflow any recursive parser's stack (V8's JSON.parse is iterative; others are not). */
export const DEEP = 100_000;
const deepArray = `${'['.repeat(DEEP)}${']'.repeat(DEEP)}`;
const deepObject = `${'{"a":'.repeat(DEEP)}1${'}'.repeat(DEEP)}`;
export const LONG = 4_000;
const long = (c: string) => c.repeat(LONG);

function safetensorsWithHeader(header: string): Uint8Array {
  const json = Buffer.from(header);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([prefix, json]);
}

function filesIn(folder: string): FileCase[] {
  return readdirSync(join(CORPUS_DIR, folder))
    .sort()
    .map((name) => ({ name: `${folder}/${name}`, bytes: readFileSync(join(CORPUS_DIR, folder, name)) }));
}

const text = (name: string, s: string): FileCase => ({ name, bytes: Buffer.from(s) });

/** Training and evaluation data: each is a JSONL file the server must refuse with the file and line. */
export function dataCases(): FileCase[] {
  return [
    ...filesIn('data'),
    text('generated/deep-array-line.jsonl', `${deepArray}\n`),
    text('generated/deep-object-line.jsonl', `{"prompt": ${deepObject}, "completion": "x"}\n`),
    // Under StartTune's 1 MiB full-check limit (data-check.ts); larger files are checked by the job itself.
    text('generated/half-mebibyte-garbage-line.jsonl', `${'x'.repeat(1 << 19)}\n`),
    text('generated/long-key-names.jsonl', `{"${long('k')}": 1, "${long('p')}": "x"}\n`),
  ];
}

export function modelCases(part: ModelPart): FileCase[] {
  const generated: Record<ModelPart, FileCase[]> = {
    safetensors: [
      { name: 'generated/deep-header.safetensors', bytes: safetensorsWithHeader(deepObject) },
      { name: 'generated/long-tensor-name.safetensors', bytes: safetensorsWithHeader(JSON.stringify({ [long('t')]: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } })) },
    ],
    config: [
      text('generated/deep-config.json', deepObject),
      text('generated/deep-array-config.json', deepArray),
      text('generated/long-model-type.json', JSON.stringify({ model_type: long('m'), hidden_size: 32 })),
    ],
    tokenizer: [text('generated/deep-tokenizer.json', deepObject), text('generated/deep-array-tokenizer.json', deepArray)],
  };
  return [...filesIn(part), ...generated[part]];
}

export interface PatternCorpus {
  /** Valid RE2; exponential in a backtracking engine. */
  backtracking: string[];
  /** Not RE2, or too large. */
  refused: string[];
}

export function patternCases(): PatternCorpus {
  const raw = JSON.parse(readFileSync(join(CORPUS_DIR, 'patterns.json'), 'utf8')) as PatternCorpus;
  return { backtracking: raw.backtracking, refused: [...raw.refused, long('a'), `(${long('b')}`] };
}

/** Oversized and odd values for single request fields: each must come back bounded. */
export const OVERSIZED = {
  path: `${long('p')}/x.jsonl`,
  jobName: `jobs/${long('a')}`,
  requestId: long('r'),
  pattern: `(${long('c')}`,
  tokenClassName: long('N'),
  /** Lone surrogates and control characters: grpc-js must still be able to send a message quoting them. */
  odd: `\ud800x\u0000\u001b[31m${'\udfff'.repeat(300)}\n`,
  /** 1 MiB: inside the server's 4 MiB request limit. */
  mebibyte: 'm'.repeat(1 << 20),
};
