// A vfio-user server in a process of its own (fixtures/serve-child.mjs over the built packages).

import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const fixture = join(import.meta.dirname, '../fixtures/serve-child.mjs');

/** Start a server for `device` ('edu', 'nic') at `path`; resolves once it listens. */
export async function startServer(path: string, device: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [fixture, path, device], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
  });
  return child;
}
