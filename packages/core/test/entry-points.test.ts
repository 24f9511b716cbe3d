// Every package entry point loads on its own in a plain Node program (issue 11, defect 7): no
// reflect-metadata import, no vitest, no other vmmkit entry first. The entry points are read
// from the workspaces' package.json files, so a new one is checked without being listed here.

import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../../..');
const run = promisify(execFile);

interface PackageJson {
  readonly name: string;
  readonly workspaces?: readonly string[];
  readonly exports?: Readonly<Record<string, { readonly default: string }>>;
}

const read = (dir: string): PackageJson => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson;

const entryPoints = (read(root).workspaces ?? []).flatMap((dir) => {
  const pkg = read(join(root, dir));
  return Object.entries(pkg.exports ?? {}).map(([sub, target]) => ({
    specifier: sub === '.' ? pkg.name : `${pkg.name}/${sub.replace(/^\.\//, '')}`,
    built: join(root, dir, target.default),
  }));
});

it('finds the entry points of every workspace', () => {
  expect(entryPoints.map((e) => e.specifier)).toEqual(expect.arrayContaining(['@vmmkit/core', '@vmmkit/core/uapi', '@vmmkit/migration']));
});

it.each(entryPoints)('$specifier loads by itself in plain Node', async ({ specifier, built }) => {
  expect(existsSync(built), `${built} is built (npm test runs tsc -b first)`).toBe(true);
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(specifier)}); console.log(Object.keys(m).length)`], { cwd: root });
  expect(Number(stdout.trim())).toBeGreaterThan(0);
}, 30_000);
