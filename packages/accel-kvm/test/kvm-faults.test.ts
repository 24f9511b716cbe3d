// A fault at each host call of KVM setup (the kvm device's realize, and the VM's close) and of
// a migration (on the source, and on the destination) leaves a typed error and no KVM fd behind.

import { describe, expect, it } from 'vitest';
import { LinuxHost, VmmError } from '@vmmkit/core';
import { migrate } from '@vmmkit/migration';
import { FaultyHost, kvmFds } from './faulty-host.js';
import { kvmMissing } from './kvm-rig.js';
import { kvmVmm, loadPagesGuest } from './kvm-machine.js';

/** Realize the kvm device on `host`, failing its call `nth` (0: none); then close the VM. */
async function realizeAndClose(host: FaultyHost, nth: number, baseline: string[]): Promise<unknown> {
  let vm: Awaited<ReturnType<typeof kvmVmm>> | undefined;
  try {
    vm = await kvmVmm({ host, beforeAccel: () => host.arm(nth) });
  } catch (e) {
    // A realize that failed has released everything itself (the VMM closed after it, too).
    expect(kvmFds(), `realize failed at call ${nth} (${host.injected})`).toEqual(baseline);
    return e;
  }
  expect(kvmFds().length).toBeGreaterThan(baseline.length + 2); // /dev/kvm, the VM, the vCPU
  return vm.vmm.close().then(() => undefined, (e: unknown) => e);
}

/** A source and a destination; the source's guest loaded and paused, so that every run makes the same calls. */
async function migrateWithFault(side: 'source' | 'destination', nth: number): Promise<{ error: unknown; calls: number; injected?: string }> {
  const srcHost = new FaultyHost(new LinuxHost());
  const dstHost = new FaultyHost(new LinuxHost());
  const src = await kvmVmm({ host: srcHost });
  const dst = await kvmVmm({ host: dstHost, incoming: true });
  loadPagesGuest(src.vmm, src.accel, { seed: 1, arenaPages: 64, reportMask: 0xfff });
  const host = side === 'source' ? srcHost : dstHost;
  host.arm(nth);
  const error = await migrate(src.vmm, dst.vmm, { downtimeLimitMs: 0, maxIterations: 2 }).then(() => undefined, (e: unknown) => e);
  const calls = host.calls;
  const injected = host.injected;
  host.arm(0);
  await src.vmm.close();
  await dst.vmm.close();
  return { error, calls, injected };
}

describe.skipIf(kvmMissing)('faults in KVM setup and migration', () => {
  it('realizing the kvm device and closing the VM: each failing host call gives a typed error and leaves no KVM fd', async () => {
    const baseline = kvmFds();
    const counter = new FaultyHost(new LinuxHost());
    expect(await realizeAndClose(counter, 0, baseline)).toBeUndefined();
    const total = counter.calls;
    expect(total).toBeGreaterThan(15);
    const hit = new Set<string>();
    for (let nth = 1; nth <= total; nth++) {
      const host = new FaultyHost(new LinuxHost());
      const err = await realizeAndClose(host, nth, baseline);
      hit.add(host.injected!);
      expect(err, `call ${nth} (${host.injected})`).toBeInstanceOf(VmmError);
      expect(kvmFds(), `call ${nth} (${host.injected})`).toEqual(baseline);
    }
    // The sweep fails every call it counted, whatever they are: the irqchip's and the PIT's creation among them.
    expect([...hit]).toEqual(expect.arrayContaining(['ioctl KVM_CREATE_IRQCHIP', 'ioctl KVM_CREATE_PIT2']));
  }, 120_000);

  it.for(['source', 'destination'] as const)('migrating, on the %s: each failing host call gives a typed error and leaves no KVM fd', { timeout: 300_000 }, async (side) => {
    const baseline = kvmFds();
    const clean = await migrateWithFault(side, 0);
    expect(clean.error).toBeUndefined();
    // The source: dirty logging on, harvests, off, and the state; the destination: the TSC rate,
    // the clock, the irqchip's three chips, the PIT and the vCPU's ten sections.
    expect(clean.calls).toBeGreaterThanOrEqual(15);
    const hit = new Set<string>();
    for (let nth = 1; nth <= clean.calls; nth++) {
      const run = await migrateWithFault(side, nth);
      hit.add(run.injected!);
      expect(run.injected, `call ${nth} of ${run.calls}: ${String(run.error)}`).toBeDefined();
      expect(run.error, `call ${nth} (${run.injected})`).toBeInstanceOf(VmmError);
      expect(kvmFds(), `call ${nth} (${run.injected})`).toEqual(baseline);
    }
    // Counted, not listed: the VM-level state's ioctls are among the calls failed.
    const vmState = side === 'source' ? ['KVM_GET_IRQCHIP', 'KVM_GET_PIT2', 'KVM_GET_TSC_KHZ'] : ['KVM_GET_TSC_KHZ', 'KVM_SET_IRQCHIP', 'KVM_SET_PIT2'];
    expect([...hit]).toEqual(expect.arrayContaining(vmState.map((name) => `ioctl ${name}`)));
  });
});
