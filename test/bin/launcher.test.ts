// bin/narrowtune.js runs dist/ only while it is newer than everything under src/, else the sources via tsx:
// checked on a copy of the launcher over a two-line package whose dist and src say which one ran.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, expect, it } from 'vitest';
import { tempDir } from '../trainer/fixtures.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const EARLIER = new Date(Date.now() - 100_000);
const LATER = new Date(Date.now() - 50_000);

let dir: string;
const pkg = (...p: string[]) => join(dir, ...p);
const run = () => execFileSync(process.execPath, [pkg('bin/narrowtune.js')], { encoding: 'utf8' }).trim();
const age = (paths: string[], t: Date) => paths.forEach((p) => utimesSync(pkg(p), t, t));

beforeEach(async () => {
  dir = await tempDir('nt-launcher-');
  mkdirSync(pkg('bin'));
  mkdirSync(pkg('src/cli'), { recursive: true });
  mkdirSync(pkg('dist/cli'), { recursive: true });
  copyFileSync(join(ROOT, 'bin/narrowtune.js'), pkg('bin/narrowtune.js'));
  symlinkSync(join(ROOT, 'node_modules'), pkg('node_modules'));
  writeFileSync(pkg('package.json'), '{ "type": "module" }\n');
  writeFileSync(pkg('src/cli/main.ts'), "const from: string = 'src';\nconsole.log(from);\n");
  writeFileSync(pkg('src/cli/other.ts'), 'export {};\n');
  writeFileSync(pkg('dist/cli/main.js'), "console.log('dist');\n");
  age(['src/cli/main.ts', 'src/cli/other.ts', 'src/cli', 'src'], EARLIER);
  age(['dist/cli/main.js'], LATER);
  return () => rmSync(dir, { recursive: true, force: true });
});

it('runs dist while it is newer than src', () => {
  expect(run()).toBe('dist');
});

it('runs the sources once a file under src is newer than dist', () => {
  writeFileSync(pkg('src/cli/other.ts'), 'export const edited = 1;\n');
  expect(run()).toBe('src');
});

it('runs the sources once a file under src is removed after the build', () => {
  rmSync(pkg('src/cli/other.ts'));
  expect(run()).toBe('src');
});

it('runs dist where every file has the same time, as in an installed package', () => {
  age(['src/cli/main.ts', 'src/cli/other.ts', 'src/cli', 'src', 'dist/cli/main.js'], EARLIER);
  expect(run()).toBe('dist');
});

it('runs the sources without dist, and dist without sources', () => {
  rmSync(pkg('dist'), { recursive: true });
  expect(run()).toBe('src');
  writeFileSync(pkg('src/cli/main.ts'), 'export {};\n'); // unused from here on
  mkdirSync(pkg('dist/cli'), { recursive: true });
  writeFileSync(pkg('dist/cli/main.js'), "console.log('dist');\n");
  rmSync(pkg('src'), { recursive: true });
  expect(run()).toBe('dist');
});
