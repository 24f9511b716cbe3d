// C baselines: the bench compiles its C sources with gcc -O3 -march=native (cached under
// ~/.cache/vmmkit-bench by a hash of source and flags) and calls them through koffi on the same
// buffers as the TypeScript subject. Without gcc a baseline is absent and its rows say so.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import koffi, { type LibraryHandle } from 'koffi';

export const C_FLAGS = ['-O3', '-march=native'];
const LIBRARY_FLAGS = ['-shared', '-fPIC'];
/** How the baselines are built, for the table. */
export const C_COMPILER = `gcc ${C_FLAGS.join(' ')}`;

const SOURCES = join(dirname(fileURLToPath(import.meta.url)), '..', 'c');

/** A compiled C source: its functions by prototype, or why there is none. */
export type NativeLibrary = { readonly lib: LibraryHandle; readonly missing?: undefined } | { readonly lib?: undefined; readonly missing: string };
/** A compiled C program: the path of its executable, or why there is none. */
export type NativeProgram = { readonly path: string; readonly missing?: undefined } | { readonly path?: undefined; readonly missing: string };

const loaded = new Map<string, NativeLibrary>();

/** Compile (once per source and flags) and load bench/c/`name`.c as a shared library. */
export function nativeLibrary(name: string): NativeLibrary {
  const cached = loaded.get(name);
  if (cached) return cached;
  const built = build(name, true);
  const result: NativeLibrary = built.path ? { lib: koffi.load(built.path) } : { missing: built.missing! };
  loaded.set(name, result);
  return result;
}

/** Compile (once per source and flags) bench/c/`name`.c as a program. */
export function nativeProgram(name: string): NativeProgram {
  return build(name, false);
}

function build(name: string, library: boolean): NativeProgram {
  const source = join(SOURCES, `${name}.c`);
  const text = readFileSync(source);
  const version = spawnSync('gcc', ['--version'], { encoding: 'utf8' });
  if (version.error || version.status !== 0) return { missing: `gcc is not installed (${version.error?.message ?? `exit ${version.status}`}): no C baseline` };
  const flags = library ? [...C_FLAGS, ...LIBRARY_FLAGS] : C_FLAGS;
  const key = createHash('sha256').update(text).update(flags.join(' ')).update(version.stdout).digest('hex').slice(0, 16);
  const dir = join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'vmmkit-bench');
  const out = join(dir, `${name}-${key}${library ? '.so' : ''}`);
  if (!existsSync(out)) {
    mkdirSync(dir, { recursive: true });
    const tmp = `${out}.${process.pid}.tmp`;
    const cc = spawnSync('gcc', [...flags, '-o', tmp, source], { encoding: 'utf8' });
    if (cc.status !== 0) return { missing: `gcc failed on ${name}.c: ${cc.stderr.trim() || cc.error?.message}` };
    renameSync(tmp, out);
  }
  return { path: out };
}
