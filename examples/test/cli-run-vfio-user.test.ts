// `vmmkit run -device vfio-user-pci`: a VM on this machine's kernel driving edu that `vmmkit serve`
// serves in another process (the built examples), in the short and QEMU's JSON forms, with guest
// RAM from memfds. The server serves one client at a time and closes a second at once, so each
// run waits until the server has seen the previous one leave.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/cli.js';
import { EXIT_OK } from '../src/cli/exit-codes.js';
import { testIo } from './cli-test-io.js';

describe.skipIf(process.platform !== 'linux')('vmmkit run with -device vfio-user-pci', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('vmmkit run drives edu served by vmmkit serve in another process as -device vfio-user-pci (short and JSON forms)', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmmkit-serve-'));
    const path = join(dir, 'edu.sock');
    const server = spawn(process.execPath, [join(import.meta.dirname, '../dist/cli/main.js'), 'serve', '--device', 'edu', '--socket', path], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    const waiters: (() => void)[] = [];
    server.stderr!.on('data', (d) => {
      log += String(d);
      for (const w of waiters.splice(0)) w();
    });
    const clientsLeft = (): number => log.match(/client left/g)?.length ?? 0;
    try {
      await new Promise<void>((resolve, reject) => {
        server.stdout!.once('data', () => resolve());
        server.once('exit', (code) => reject(new Error(`vmmkit serve exited with ${code}: ${log}`)));
      });
      for (const [i, device] of [`vfio-user-pci,socket=${path},id=edu0`, JSON.stringify({ driver: 'vfio-user-pci', socket: { path, type: 'unix' }, id: 'edu0' })].entries()) {
        // The server serves one client at a time: the previous run's must have left first.
        while (clientsLeft() < i) await new Promise<void>((resolve) => waiters.push(resolve));
        const r = testIo();
        expect(await runCli(['run', '-m', '16M', '-device', device, '--duration', '0.05'], r.io), [...r.out, ...r.err, log].join('\n')).toBe(EXIT_OK);
        const row = r.out.find((l) => l.startsWith('edu0 '));
        expect(row, r.out.join('\n')).toMatch(new RegExp(`^edu0 +vfio-user-pci +vfio-user:${path} +vfio-iommu-user `));
        // The CLI backs guest RAM with memfds for a vfio-user device: no warning that RAM is reached by message only.
        expect(r.err.join('\n')).not.toMatch(/DMA_READ\/DMA_WRITE messages/);
        expect(r.out.at(-1)).toBe('duration elapsed: stopping');
      }
    } finally {
      server.kill('SIGTERM');
      await new Promise((resolve) => (server.exitCode !== null ? resolve(undefined) : server.once('close', resolve)));
    }
    expect(log.match(/client left/g)?.length).toBe(2);
  });
});
