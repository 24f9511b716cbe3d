// A fault at each host call of BAR mapping (memslots and ioeventfds added when the guest enables
// and moves a BAR, removed when it moves it, turns decoding off or the function is unplugged)
// gives a typed error naming the BAR, the function and the ioctl; the BAR is then mapped whole
// or not at all, nothing is left that the follower does not know of (what KVM refused to remove
// goes at the next reading of the BARs), and no fd stays behind.

import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HostError, LinuxHost } from '@vmmkit/core';
import { PCI_COMMAND, PCI_COMMAND_MEMORY } from '@vmmkit/core/uapi';
import { KvmError } from '../src/index.js';
import { FakeBarFunction, configRead, configWrite } from './fake-bar-function.js';
import { FaultyHost, kvmFds } from './faulty-host.js';
import { kvmVmm } from './kvm-machine.js';
import { kvmMissing } from './kvm-rig.js';

const SLOT = 1;
const fds = (): number => readdirSync('/proc/self/fd').length;

/** Enable BAR0, move it, turn decoding off, on again, unplug: failing host call `nth` (0: none). */
async function scenario(nth: number) {
  const host = new FaultyHost(new LinuxHost());
  let fn: FakeBarFunction | undefined;
  const m = await kvmVmm({ host, beforeAccel: (vmm) => { fn = new FakeBarFunction(new LinuxHost()); vmm.pciBus.plug(fn); } });
  const f = fn!;
  const consistent: string[] = [];
  try {
    const io = m.accel.io;
    const mappings = m.accel.barMappings;
    const memslots = m.accel.vm.memslots;
    const check = (step: string): void => {
      // One owner: every device slot KVM has is one the follower holds, and a BAR is mapped whole or not at all.
      const held = mappings.mapped.flatMap((b) => b.memslots);
      if (memslots.deviceSlots.length !== held.length || held.some((s) => !memslots.deviceSlots.includes(s))) consistent.push(`${step}: slots not the follower's`);
      for (const b of mappings.mapped) if (!b.stale && (b.memslots.length !== 2 || b.ioeventfds.length !== 1)) consistent.push(`${step}: BAR${b.bar} half mapped`);
      // What is left of a BAR that went is only what KVM refused to remove (a failed map was undone at once).
      const refused = mappings.errors.some((e) => e.step.startsWith('unmap'));
      for (const b of mappings.mapped) if (b.stale && !refused) consistent.push(`${step}: BAR${b.bar} left behind`);
    };
    await configWrite(io, SLOT, 0x10, 4, 0xe000_0000);
    await configWrite(io, SLOT, 0x14, 4, 0);
    const command = await configRead(io, SLOT, PCI_COMMAND, 2);
    host.arm(nth);
    await configWrite(io, SLOT, PCI_COMMAND, 2, command | PCI_COMMAND_MEMORY);
    check('enable');
    await configWrite(io, SLOT, 0x10, 4, 0xe010_0000);
    check('move');
    await configWrite(io, SLOT, PCI_COMMAND, 2, command & ~PCI_COMMAND_MEMORY);
    check('disable');
    await configWrite(io, SLOT, PCI_COMMAND, 2, command | PCI_COMMAND_MEMORY);
    check('enable again');
    m.vmm.pciBus.unplug(f);
    check('unplug');
    const calls = host.calls;
    const injected = host.injected;
    host.arm(0);
    // What KVM refused to remove goes at the next reading of the BARs.
    await configRead(io, SLOT, PCI_COMMAND, 2);
    m.accel.pciHost!.invalidate();
    await m.accel.pciHost!.windows.current();
    const left = { slots: memslots.deviceSlots.length, mapped: mappings.mapped.length };
    return { calls, injected, errors: [...mappings.errors], consistent, left };
  } finally {
    m.vmm.pciBus.unplug(f);
    host.arm(0);
    await m.vmm.close();
    await f.unrealize();
  }
}

describe.skipIf(kvmMissing)('faults in BAR mapping', () => {
  it('each failing host call gives a KvmError naming the BAR, the function and the ioctl; nothing is left registered, no fd', { timeout: 120_000 }, async () => {
    const baseline = kvmFds();
    const before = fds();
    const clean = await scenario(0);
    expect(clean.errors).toEqual([]);
    expect(clean.consistent).toEqual([]);
    // Slots and ioeventfd: added (3), moved (3 out, 3 in), removed (3), added (3), removed at unplug (3).
    expect(clean.calls).toBe(18);
    for (let nth = 1; nth <= clean.calls; nth++) {
      const run = await scenario(nth);
      const what = `call ${nth} (${run.injected})`;
      expect(run.injected, what).toMatch(/^ioctl (KVM_SET_USER_MEMORY_REGION|KVM_IOEVENTFD)$/);
      expect(run.errors, what).toHaveLength(1);
      const e = run.errors[0]!;
      expect(e, what).toBeInstanceOf(KvmError);
      expect(e.message, what).toMatch(/^KVM: (map|unmap) BAR0 of 'fake0' at 0xe0[01]00000: /);
      expect(e.message, what).toContain(run.injected!.slice('ioctl '.length));
      expect(e.message, what).toContain('EIO');
      expect((e.cause as KvmError).cause ?? e.cause, what).toBeInstanceOf(HostError);
      expect(run.consistent, what).toEqual([]);
      expect(run.left, what).toEqual({ slots: 0, mapped: 0 });
      expect(kvmFds(), what).toEqual(baseline);
    }
    expect(fds()).toBe(before);
  });
});
