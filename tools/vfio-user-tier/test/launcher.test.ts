// The launcher's promises: QEMU never outlives whoever started it, whichever way that ends, and
// leaves no socket behind; a QEMU that refuses its command line is reported in its own words.

import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { preparedQemuVersion, TIER_DIR } from '../support/paths.js';
import { QemuPeerError } from '../support/peer-error.js';
import { childrenOf, QemuPeer } from '../support/qemu-peer.js';
import { RunDir } from '../support/run-dir.js';

const version = preparedQemuVersion();
const reason = version ? undefined : 'no QEMU root: run tools/vfio-user-tier/prepare.sh (npm run test:vfio-user does)';
if (reason) console.warn(`[vfio-user tier] launcher checks skipped: ${reason}`);

/** Whether a process runs (a zombie does not: here PID 1 may never reap the ones it inherits). */
function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0] !== 'Z';
  } catch {
    return false;
  }
}

/** The QEMU a launcher started, once the launcher became unshare and forked it. */
function qemuOf(launcher: number): number | undefined {
  const cmdline = (pid: number): string => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { return ''; } };
  if (!cmdline(launcher).startsWith('unshare')) return undefined;
  return childrenOf(launcher).find((pid) => cmdline(pid).includes('qemu-system-x86_64'));
}

async function gone(pid: number, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(10);
  }
  return true;
}

describe.skipIf(reason !== undefined)(`the QEMU launcher (${version ?? reason})`, () => {
  let runDir: RunDir;
  beforeEach(() => {
    runDir = RunDir.create();
  });
  afterEach(() => {
    runDir.remove();
  });

  it('a QEMU that refuses its command line is reported with its own words, leaving no process or socket', async () => {
    const failure = await QemuPeer.start({ runDir, devices: ['no-such-device'] }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(QemuPeerError);
    expect((failure as Error).message).toMatch(/'no-such-device' is not a valid device model name/);
    expect(readdirSync(runDir.hostPath)).toEqual([]);
  });

  it('stop() quits QEMU and removes both sockets', async () => {
    const peer = await QemuPeer.start({ runDir });
    const qemu = peer.qemuPid!;
    expect(qemuOf(peer.launcherPid)).toBe(qemu);
    expect(readdirSync(runDir.hostPath).sort()).toEqual(['qmp.sock']);
    await peer.stop();
    expect(await gone(qemu)).toBe(true);
    expect(await peer.exited).toBe(0);
    expect(readdirSync(runDir.hostPath)).toEqual([]);
  });

  it('QEMU dies with its launcher, and stop() still cleans up after it', async () => {
    const peer = await QemuPeer.start({ runDir });
    const qemu = peer.qemuPid!;
    process.kill(peer.launcherPid, 'SIGKILL');
    expect(await gone(qemu)).toBe(true);
    await peer.stop();
    expect(readdirSync(runDir.hostPath)).toEqual([]);
  });

  it("QEMU dies with the process that launched it, even one killed without a chance to clean up", async () => {
    // A shell stands for a test process that gets SIGKILL: it launches QEMU as run-qemu.sh's
    // header says to, and says the launcher's pid.
    const parent = spawn('bash', ['-c', `setpriv --pdeathsig KILL "${join(TIER_DIR, 'run-qemu.sh')}" -machine q35 -accel qtest -nodefaults -display none & echo $!; wait`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const launcher = Number(await new Promise<string>((resolve) => parent.stdout!.once('data', (d: Buffer) => resolve(d.toString()))));
    let qemu: number | undefined;
    const deadline = Date.now() + 5_000;
    while (!(qemu = qemuOf(launcher)) && Date.now() < deadline) await sleep(10);
    expect(qemu).toBeGreaterThan(0);
    parent.kill('SIGKILL');
    expect(await gone(launcher)).toBe(true);
    expect(await gone(qemu!)).toBe(true);
  });
});
