#!/usr/bin/env node
// The `vmmkit` command. The CLI is TypeScript built into dist/: a checkout that was not built
// yet (npm ci links this file before anything is compiled), or whose sources changed since the
// last build, is built first.

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const examples = join(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(examples, 'dist', 'cli', 'main.js');

/** The newest modification time of the .ts files under `dir`. */
function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

function stale() {
  if (!existsSync(main)) return true;
  const built = statSync(main).mtimeMs;
  const packages = join(examples, '..', 'packages');
  const sources = [join(examples, 'src'), ...readdirSync(packages).map((p) => join(packages, p, 'src'))].filter(existsSync);
  return sources.some((dir) => newestSource(dir) > built);
}

if (stale()) {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  process.stderr.write('vmmkit: building the workspace first (tsc -b examples)...\n');
  execFileSync(process.execPath, [tsc, '-b', examples], { stdio: ['ignore', 'ignore', 'inherit'] });
  // tsc leaves unchanged outputs alone: mark the build as newer than the sources it saw.
  const now = new Date();
  utimesSync(main, now, now);
}
// Output piped into `head` and the like: a closed pipe ends the command quietly, as for any Unix tool.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});
await import(main);
