// `vmmkit run` and the ways `run` and `migrate` fail before any migration starts, in process:
// the VM is composed, described and closed, and each outcome has its exit status.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../src/cli/cli.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from '../src/cli/exit-codes.js';
import { MAX_TIMER_DELAY_MS, waitFor } from '../src/cli/vm/interrupt.js';
import { testIo } from './cli-test-io.js';

const TWO_NICS = [
  '-object', 'iommufd,id=iommufd0',
  '-device', 'vfio-pci,id=nic-a,host=0000:00:05.0',
  '-device', 'vfio-pci,id=nic-b,host=0000:00:06.0,iommufd=iommufd0',
];

describe('vmmkit run --sim', () => {
  it('composes the VM, prints its devices and migration plan, runs for --duration and exits 0', async () => {
    const t = testIo();
    const started = performance.now();
    expect(await runCli(['run', '--sim', '-m', '64M', '-name', 'demo', ...TWO_NICS, '--duration', '0.2'], t.io)).toBe(EXIT_OK);
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    expect(t.err).toEqual([]);
    const row = (id: string) => t.out.find((l) => l.startsWith(`${id} `))?.split(/\s+/);
    expect(t.out[0]).toBe("VM 'demo': RAM ram-low 64 MiB at 0x0");
    expect(row('nic-a')).toEqual(['nic-a', 'vfio-pci', '0000:00:05.0', 'vfio-iommu-legacy', expect.any(String), 'STOP_COPY,P2P,PRE_COPY', 'yes']);
    expect(row('nic-b')).toEqual(['nic-b', 'vfio-pci', '0000:00:06.0', 'vfio-iommu-iommufd', expect.any(String), 'STOP_COPY,P2P,PRE_COPY', 'yes']);
    const plan = t.out.filter((l) => l.startsWith('  container '));
    expect(plan).toHaveLength(2);
    for (const line of plan) expect(line).toMatch(/: device dirty tracking, every device logs its own DMA/);
    expect(t.out).toContain('  the VM can migrate');
    expect(t.out.slice(-2)).toEqual(['running for 0.2 s (the guest is at work)', 'duration elapsed: stopping']);
  });

  it('runs until interrupted when no duration is given', async () => {
    const t = testIo();
    const status = runCli(['run', '--sim', '-m', '32M', '-device', 'vfio-pci,host=0000:00:05.0'], t.io);
    await t.waitForLine(/^running until SIGINT or SIGTERM/);
    t.interrupt('SIGTERM');
    expect(await status).toBe(EXIT_OK);
    expect(t.out.at(-1)).toBe('SIGTERM: stopping');
  });

  it('keeps running for a --duration longer than one timer can wait (2^31 - 1 ms), until interrupted', async () => {
    const t = testIo();
    const status = runCli(['run', '--sim', '-m', '32M', '--duration', '2147484'], t.io);
    let done = false;
    void status.then(() => (done = true));
    await t.waitForLine(/^running for 2147484 s/);
    await new Promise((r) => setTimeout(r, 100));
    expect(done).toBe(false);
    t.interrupt('SIGINT');
    expect(await status).toBe(EXIT_OK);
    expect(t.out.at(-1)).toBe('SIGINT: stopping');
  });

  it('prints the blockers of a VM that cannot migrate, and still runs it', async () => {
    const t = testIo();
    expect(await runCli(['run', '--sim', '-m', '32M', '-device', 'vfio-pci,host=0000:00:03.0', '--duration', '0'], t.io)).toBe(EXIT_OK);
    expect(t.out).toContain('  blocker: 0000:00:03.0: VFIO migration is not supported in kernel');
    expect(t.out).toContain('  the VM cannot migrate (1 blocker)');
  });
});

describe('waitFor', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('waits out a duration longer than one timer takes, re-arming the timer', async () => {
    vi.useFakeTimers();
    const signal = new AbortController().signal;
    let outcome: string | undefined;
    void waitFor(2 * MAX_TIMER_DELAY_MS + 5, signal).then((o) => (outcome = o));
    await vi.advanceTimersByTimeAsync(2 * MAX_TIMER_DELAY_MS);
    expect(outcome).toBeUndefined();
    await vi.advanceTimersByTimeAsync(4);
    expect(outcome).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(outcome).toBe('elapsed');
    expect(vi.getTimerCount()).toBe(0);
  });

  it('is interrupted during a long wait, leaving no timer behind', async () => {
    const controller = new AbortController();
    const waiting = waitFor(MAX_TIMER_DELAY_MS + 1, controller.signal);
    let outcome: string | undefined;
    void waiting.then((o) => (outcome = o));
    // Node fires an oversized timer after 1 ms: a real 50 ms shows the wait was not cut short.
    await new Promise((r) => setTimeout(r, 50));
    expect(outcome).toBeUndefined();
    controller.abort('SIGINT');
    expect(await waiting).toBe('interrupted');
  });

  it('waits for exactly the duration, and not at all once interrupted', async () => {
    vi.useFakeTimers();
    const controller = new AbortController();
    const short = waitFor(10, controller.signal);
    await vi.advanceTimersByTimeAsync(10);
    expect(await short).toBe('elapsed');
    const forever = waitFor(undefined, controller.signal);
    await vi.advanceTimersByTimeAsync(10 * MAX_TIMER_DELAY_MS);
    controller.abort('SIGTERM');
    expect(await forever).toBe('interrupted');
    expect(await waitFor(10, controller.signal)).toBe('interrupted');
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('vmmkit run and migrate: failures', () => {
  it('a -device with a bad option is bad usage (exit 2), naming the option', async () => {
    const t = testIo();
    expect(await runCli(['run', '--sim', '-device', 'vfio-pci,host=0000:00:05.0,speed=fast', '--duration', '0'], t.io)).toBe(EXIT_USAGE);
    expect(t.err[0]).toMatch(/^vmmkit: -device vfio-pci: unknown option 'speed'/);
    expect(t.err[1]).toBe("Try 'vmmkit help' for usage.");
  });

  it('a -device referring to a missing -object is bad usage (exit 2)', async () => {
    const t = testIo();
    expect(await runCli(['run', '--sim', '-device', 'vfio-pci,host=0000:00:05.0,iommufd=nope', '--duration', '0'], t.io)).toBe(EXIT_USAGE);
    expect(t.err[0]).toContain("option 'iommufd' refers to 'nope'");
  });

  it('a device that cannot be realized fails the work (exit 1) with the device and the step', async () => {
    const t = testIo();
    expect(await runCli(['run', '--sim', '-device', 'vfio-pci,host=0000:00:09.0', '--duration', '0'], t.io)).toBe(EXIT_FAILURE);
    expect(t.err).toEqual([expect.stringMatching(/^vmmkit: 0000:00:09\.0: failed to /)]);
  });

  it('a blocked migration exits 1 naming the blocker, before connecting anywhere', async () => {
    const t = testIo();
    // Nothing listens on this address: the blocker must be reported before any connection is tried.
    const status = await runCli(['migrate', 'unix:/nonexistent/vmmkit.sock', '--sim', '-m', '32M', '-device', 'vfio-pci,host=0000:00:03.0'], t.io);
    expect(status).toBe(EXIT_FAILURE);
    expect(t.err).toEqual(['vmmkit: the VM cannot migrate: 0000:00:03.0: VFIO migration is not supported in kernel']);
  });

  it('a migration with a device that has migration disabled names that blocker', async () => {
    const t = testIo();
    const status = await runCli(['migrate', 'tcp:127.0.0.1:9', '--sim', '-m', '32M', '-device', 'vfio-pci,host=0000:00:05.0,enable-migration=off'], t.io);
    expect(status).toBe(EXIT_FAILURE);
    expect(t.err).toEqual(['vmmkit: the VM cannot migrate: 0000:00:05.0: Migration is disabled for VFIO device']);
  });

  it('a destination that is not there fails the migration (exit 1) naming the address', async () => {
    const t = testIo();
    const status = await runCli(['migrate', 'unix:/nonexistent/vmmkit.sock', '--sim', '-m', '32M', '-device', 'vfio-pci,host=0000:00:05.0'], t.io);
    expect(status).toBe(EXIT_FAILURE);
    expect(t.err).toEqual([expect.stringContaining('unix:/nonexistent/vmmkit.sock')]);
  });
});
