// The records of a data file in either layout: JSON Lines (one value a line, blank lines skipped) or one JSON
// array (LLaVA's .json files), each with the 1-based line it starts on, for error messages.

export interface JsonRecord {
  line: number;
  value: unknown;
}

/** `fail(line, problem)` reports a syntax error; line is null when the array as a whole does not parse. */
export function jsonRecords(text: string, fail: (line: number | null, problem: string) => never): JsonRecord[] {
  return text.trimStart().startsWith('[') ? arrayRecords(text, fail) : lineRecords(text, fail);
}

function lineRecords(text: string, fail: (line: number | null, problem: string) => never): JsonRecord[] {
  const records: JsonRecord[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    if (line.trim() === '') continue;
    try {
      records.push({ line: i + 1, value: JSON.parse(line) });
    } catch (err) {
      fail(i + 1, `invalid JSON: ${(err as Error).message}`);
    }
  }
  return records;
}

function arrayRecords(text: string, fail: (line: number | null, problem: string) => never): JsonRecord[] {
  let values: unknown[];
  try {
    values = JSON.parse(text) as unknown[];
  } catch (err) {
    return fail(null, `the file starts with "[", so it is read as one JSON array, and that is invalid JSON: ${(err as Error).message}`);
  }
  const starts = elementStarts(text);
  const records: JsonRecord[] = [];
  let line = 1;
  let pos = 0;
  values.forEach((value, k) => {
    for (; pos < starts[k]; pos++) if (text.charCodeAt(pos) === NEWLINE) line++;
    records.push({ line, value });
  });
  return records;
}

const NEWLINE = 10;

/** Offsets where the top-level elements of a JSON array begin (the text is known to be valid JSON). */
function elementStarts(text: string): number[] {
  const starts: number[] = [];
  let depth = 0;
  let inString = false;
  let expectValue = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (ch === '\\') i++;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === ' ' || ch === '\n' || ch === '\r' || ch === '\t') continue;
    if (depth === 1 && expectValue) {
      starts.push(i);
      expectValue = false;
    }
    if (ch === '"') inString = true;
    else if (ch === '[' || ch === '{') expectValue = ++depth === 1;
    else if (ch === ']' || ch === '}') depth--;
    else if (ch === ',' && depth === 1) expectValue = true;
  }
  return starts;
}
