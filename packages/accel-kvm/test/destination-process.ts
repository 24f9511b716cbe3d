// A destination VMM in a process of its own, for the two-process migration tests: a fixture
// script that listens on `uri`, takes the migration and prints its report as the last line.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connectMigration, type MigrationTransport } from '@vmmkit/migration';

/**
 * Run `fixtures/<script>` with `args`; resolves to the JSON of its last stdout line when it
 * exits 0, rejects with its stderr (or that line) otherwise.
 */
export function runDestination<Report>(script: string, args: readonly string[]): Promise<Report> {
  const path = fileURLToPath(new URL(`./fixtures/${script}`, import.meta.url));
  const child = spawn(process.execPath, [path, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      if (code === 0) resolve(JSON.parse(last) as Report);
      else reject(new Error(`the destination exited with ${code}: ${err || last}`));
    });
  });
}

/** Connect to the destination at `uri` once it listens (it is a process still starting). */
export async function connectWhenListening(uri: string, attempts = 200): Promise<MigrationTransport> {
  for (let i = 0; ; i++) {
    try {
      return await connectMigration(uri, { timeoutMs: 2000 });
    } catch (e) {
      if (i >= attempts) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
