#!/usr/bin/env node
// The `vmmkit` command. The CLI is TypeScript built into dist/; a fresh checkout that has not
// been built yet (npm ci links this file before anything is compiled) builds it first.

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const main = join(here, '..', 'dist', 'cli', 'main.js');
if (!existsSync(main)) {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  process.stderr.write('vmmkit: building the workspace first (tsc -b examples)...\n');
  execFileSync(process.execPath, [tsc, '-b', join(here, '..')], { stdio: 'inherit' });
}
await import(main);
