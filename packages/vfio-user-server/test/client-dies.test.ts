// A client process killed in the middle of its session: the server (here, on this machine's
// kernel over a real socket) closes the eventfd and unmaps the guest RAM the dead client had
// handed it, and this process's fd table and mappings are as before.

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { LinuxHost } from '@vmmkit/core';
import { createModel } from '@vmmkit/sim';
import { serveSocket } from '@vmmkit/vfio-user-server';

const fds = (): number => readdirSync('/proc/self/fd').length;
const memfdMappings = (): number => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('/memfd:guest-ram')).length;

it('releases what a SIGKILLed client held', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmmkit-vu-'));
  const path = join(dir, 'edu.sock');
  const served = serveSocket(path, { model: createModel({ model: 'edu' }), host: new LinuxHost(), tickMs: 0 });
  try {
    const before = fds();
    const child = spawn(process.execPath, [join(import.meta.dirname, 'fixtures/client-child.mjs'), path], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`client exited with ${code}`)));
    });
    const session = served.server.connection!;
    expect(session.dma.count).toBe(1);
    expect(memfdMappings()).toBe(1);
    expect(fds()).toBeGreaterThan(before); // the client's eventfd and the connection
    const gone = new Promise((r) => child.once('close', r)); // its stdout pipe is closed too
    child.kill('SIGKILL');
    const error = await session.closed;
    await gone;
    expect(error).toBeUndefined(); // a peer that goes away is an end of stream, not an error
    expect(session.dma.count).toBe(0);
    expect(memfdMappings()).toBe(0);
    expect(fds()).toBe(before);
  } finally {
    await served.close();
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
