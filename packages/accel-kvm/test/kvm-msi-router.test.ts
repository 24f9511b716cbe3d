// The KVM MSI router on real KVM: a real eventfd connected through it raises the programmed MSI
// in the VM's local APIC without the VMM reading the eventfd (KVM consumes the count); the GSI
// table keeps the irqchip's default routes (checked in the table committed and by KVM itself:
// a pin GSI still reaches the PIC); updates and disconnects; and a fault at each host call of
// connect, update and disconnect gives a KvmError naming the GSI and the ioctl, leaves nothing
// routed that the caller does not hold, and no fd behind.

import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HostError, LinuxHost, type HostKernel, type MsiMessage } from '@vmmkit/core';
import {
  EFD_CLOEXEC, EFD_NONBLOCK, KVM_GET_LAPIC, KVM_IRQ_LINE_STATUS, KVM_SET_GSI_ROUTING, KVM_SET_LAPIC, kvm_irq_level,
  kvm_lapic_state,
} from '@vmmkit/core/uapi';
import { FIRST_MSI_GSI, KvmError, KvmIrqRoutes, defaultIrqchipRoutes, encodeGsiRouting, type KvmMsiRouter } from '../src/index.js';
import { FaultyHost, kvmFds } from './faulty-host.js';
import { kvmMissing, kvmRig } from './kvm-rig.js';

const APIC_SVR = 0xf0;
const APIC_IRR = 0x200;
/** Fixed delivery to the local APIC with ID 0, vector `vector`. */
const msi = (vector: number): MsiMessage => ({ address: 0xfee0_0000n, data: vector });
const fdCount = (): number => readdirSync('/proc/self/fd').length;

type Rig = Awaited<ReturnType<typeof kvmRig>>;

/** The local APIC of vCPU 0 software-enabled (SVR bit 8), so that it accepts fixed interrupts. */
function enableApic(rig: Rig): void {
  const lapic = kvm_lapic_state.encode();
  rig.host.ioctl(rig.vcpu.fd, KVM_GET_LAPIC, lapic);
  new DataView(lapic.buffer).setUint32(APIC_SVR, 0x1ff, true);
  rig.host.ioctl(rig.vcpu.fd, KVM_SET_LAPIC, lapic);
}

/** Whether `vector` is requested in vCPU 0's local APIC (its IRR bit). */
function requested(rig: Rig, vector: number): boolean {
  const lapic = kvm_lapic_state.encode();
  rig.host.ioctl(rig.vcpu.fd, KVM_GET_LAPIC, lapic);
  const word = new DataView(lapic.buffer).getUint32(APIC_IRR + (vector >> 5) * 0x10, true);
  return ((word >>> (vector & 31)) & 1) === 1;
}

/** Resolves once `vector` is requested (KVM may inject from a work item), or rejects after 5 s. */
async function untilRequested(rig: Rig, vector: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (requested(rig, vector)) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`vector 0x${vector.toString(16)} never reached the local APIC`);
}

function signal(host: HostKernel, fd: number): void {
  const one = new Uint8Array(8);
  one[0] = 1;
  host.write(fd, one);
}

/** The eventfd's count (read resets it); 0 when nothing is counted. */
function counted(host: HostKernel, fd: number): bigint {
  const buf = new Uint8Array(8);
  try {
    host.read(fd, buf);
  } catch (e) {
    if (HostError.is(e, 'EAGAIN')) return 0n;
    throw e;
  }
  return new DataView(buf.buffer).getBigUint64(0, true);
}

/** Whether `fd` is an irqfd of the VM now: KVM refuses a second irqfd on one eventfd (EBUSY). */
function isIrqfd(rig: Rig, fd: number): boolean {
  try {
    rig.vm.eventfds.addIrqfd(fd, 200)();
    return false;
  } catch (e) {
    if (e instanceof KvmError && HostError.is(e.cause, 'EBUSY')) return true;
    throw e;
  }
}

/** KVM_IRQ_LINE_STATUS on `gsi`: <0 when no route takes it. Raises and lowers the line. */
function lineStatus(rig: Rig, gsi: number): number {
  const raise = kvm_irq_level.encode({ irq: gsi, level: 1 });
  rig.host.ioctl(rig.vm.fd, KVM_IRQ_LINE_STATUS, raise);
  rig.host.ioctl(rig.vm.fd, KVM_IRQ_LINE_STATUS, kvm_irq_level.encode({ irq: gsi, level: 0 }));
  return kvm_irq_level.get(raise, 'status');
}

// kvm_pvm is slow and the machine shared: room beyond vitest's 5 s default (a bound, not a measurement).
describe.skipIf(kvmMissing)('the KVM MSI router', { timeout: 60_000 }, () => {
  it('routes a real eventfd to an MSI in the local APIC without the VMM reading it; updates, disconnects; the default routes stay', async () => {
    const rig = await kvmRig({ irqchip: 'on' });
    const fds = [0, 1].map(() => rig.host.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    const [a, b] = fds as [number, number];
    try {
      const router: KvmMsiRouter = rig.vm.msiRouter!;
      expect(router).toBeDefined();
      const defaults = defaultIrqchipRoutes();
      // The kernel's x86 defaults: 16 PIC inputs and 24 IOAPIC pins.
      expect(defaults.length).toBe(40);
      expect(defaults.filter((r) => r.gsi === 4)).toEqual([
        { gsi: 4, kind: 'irqchip', irqchip: 2, pin: 4 }, { gsi: 4, kind: 'irqchip', irqchip: 0, pin: 4 },
      ]);
      expect(router.routes.table).toEqual(defaults);
      enableApic(rig);

      const route = router.connect(a, msi(0x41));
      expect(router.connected).toEqual([{ eventfd: a, gsi: FIRST_MSI_GSI }]);
      expect(router.routes.table).toEqual([...defaults, { gsi: 24, kind: 'msi', message: msi(0x41) }]);
      expect(requested(rig, 0x41)).toBe(false);
      signal(rig.host, a);
      await untilRequested(rig, 0x41);
      // KVM took the signal: nothing is left for a reader.
      expect(counted(rig.host, a)).toBe(0n);
      expect(isIrqfd(rig, a)).toBe(true);

      // A pin GSI still reaches the PIC after the commits (the table kept the defaults).
      expect(lineStatus(rig, 4)).toBeGreaterThanOrEqual(0);

      route.update(msi(0x42));
      expect(router.routes.table.at(-1)).toEqual({ gsi: 24, kind: 'msi', message: msi(0x42) });
      signal(rig.host, a);
      await untilRequested(rig, 0x42);

      const second = router.connect(b, msi(0x43));
      expect(router.connected.map((r) => r.gsi)).toEqual([24, 25]);
      route.disconnect();
      route.disconnect(); // once only
      expect(router.routes.msiGsis).toEqual([25]);
      expect(isIrqfd(rig, a)).toBe(false);
      // Disconnected: the signal stays in the eventfd, for the VMM.
      signal(rig.host, a);
      await new Promise((r) => setTimeout(r, 50));
      expect(counted(rig.host, a)).toBe(1n);
      expect(() => route.update(msi(0x44))).toThrow(/GSI 24: the route is disconnected/);
      // The freed GSI is handed out again.
      const third = router.connect(a, msi(0x44));
      expect(router.connected.map((r) => r.gsi)).toEqual([25, 24]);
      signal(rig.host, b);
      await untilRequested(rig, 0x43);
      second.disconnect();
      third.disconnect();
      expect(router.connected).toEqual([]);
      expect(router.routes.table).toEqual(defaults);
      expect(requested(rig, 0x44)).toBe(false);

      // The check above can fail: a table without the defaults leaves GSI 4 to no one.
      rig.host.ioctl(rig.vm.fd, KVM_SET_GSI_ROUTING, encodeGsiRouting([]));
      expect(lineStatus(rig, 4)).toBeLessThan(0);
    } finally {
      await rig.close();
      for (const fd of fds) rig.host.close(fd);
    }
  });

  it('refuses a route beyond the table\'s size, naming it, and commits nothing', async () => {
    const rig = await kvmRig({ irqchip: 'on' });
    try {
      // Room for the 40 defaults and one MSI route.
      const routes = new KvmIrqRoutes(rig.host, rig.vm.fd, 41);
      expect(routes.addMsi(msi(0x41))).toBe(24);
      expect(() => routes.addMsi(msi(0x42))).toThrow(/route an MSI: the routing table is full \(41 entries\)/);
      expect(routes.msiGsis).toEqual([24]);
      expect(() => routes.updateMsi(25, msi(0x42))).toThrow(/GSI 25 has no MSI route/);
      routes.removeMsi(24);
      expect(routes.table).toEqual(defaultIrqchipRoutes());
    } finally {
      await rig.close();
    }
  });

  it('is not there without an in-kernel irqchip', async () => {
    const rig = await kvmRig({ irqchip: 'off' });
    try {
      expect(rig.vm.msiRouter).toBeUndefined();
    } finally {
      await rig.close();
    }
  });

  it('connects nothing once its VM is closing, and routes disconnected then do nothing', async () => {
    const rig = await kvmRig({ irqchip: 'on' });
    const fd = rig.host.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    try {
      const route = rig.vm.msiRouter!.connect(fd, msi(0x41));
      rig.vm.msiRouter!.close();
      route.disconnect();
      expect(() => rig.vm.msiRouter!.connect(fd, msi(0x41))).toThrow(KvmError);
    } finally {
      await rig.close();
      rig.host.close(fd);
    }
  });

  /** connect, update, disconnect with host call `nth` failing (0: none). */
  async function routeWithFault(nth: number) {
    const host = new FaultyHost(new LinuxHost());
    const rig = await kvmRig({ host, irqchip: 'on' });
    const fd = host.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    const router = rig.vm.msiRouter!;
    let step = 'connect';
    let route: ReturnType<KvmMsiRouter['connect']> | undefined;
    let error: unknown;
    host.arm(nth);
    try {
      route = router.connect(fd, msi(0x41));
      step = 'update';
      route.update(msi(0x42));
      step = 'disconnect';
      route.disconnect();
      step = 'done';
    } catch (e) {
      error = e;
    }
    const calls = host.calls;
    const injected = host.injected;
    host.arm(0);
    const after = { connected: router.connected.length, gsis: router.routes.msiGsis, irqfd: isIrqfd(rig, fd), table: router.routes.table.at(-1) };
    // What the caller still holds it can undo.
    if (after.connected) route!.disconnect();
    const leftover = { connected: router.connected.length, gsis: router.routes.msiGsis, irqfd: isIrqfd(rig, fd) };
    await rig.close();
    host.close(fd);
    return { error, calls, injected, step, after, leftover };
  }

  it('a fault at each host call of connect, update and disconnect: a KvmError naming the GSI and ioctl; nothing routed but what the caller holds; no fd left', async () => {
    const baseline = { kvm: kvmFds(), all: fdCount() };
    const clean = await routeWithFault(0);
    expect(clean.error).toBeUndefined();
    expect(clean.step).toBe('done');
    // SET_GSI_ROUTING + IRQFD, SET_GSI_ROUTING, IRQFD deassign + SET_GSI_ROUTING.
    expect(clean.calls).toBe(5);
    const expected: Record<number, { step: string; ioctl: string; live: boolean }> = {
      1: { step: 'connect', ioctl: 'KVM_SET_GSI_ROUTING', live: false },
      2: { step: 'connect', ioctl: 'KVM_IRQFD', live: false },
      3: { step: 'update', ioctl: 'KVM_SET_GSI_ROUTING', live: true },
      4: { step: 'disconnect', ioctl: 'KVM_IRQFD', live: true },
      5: { step: 'disconnect', ioctl: 'KVM_SET_GSI_ROUTING', live: false },
    };
    for (let nth = 1; nth <= clean.calls; nth++) {
      const run = await routeWithFault(nth);
      const want = expected[nth]!;
      const what = `call ${nth} (${run.injected})`;
      expect(run.injected, what).toBe(`ioctl ${want.ioctl}`);
      expect(run.step, what).toBe(want.step);
      expect(run.error, what).toBeInstanceOf(KvmError);
      expect((run.error as KvmError).message, what).toMatch(/GSI 24/);
      expect(((run.error as KvmError).cause as HostError).ioctl, what).toBe(want.ioctl);
      // A failed connect or a disconnect whose table commit failed leaves nothing routed; a
      // failed update keeps the old message; a refused irqfd deassign keeps the route to retry.
      expect(run.after, what).toMatchObject(want.live ? { connected: 1, gsis: [24], irqfd: true } : { connected: 0, gsis: [], irqfd: false });
      if (want.step === 'update') expect(run.after.table, what).toEqual({ gsi: 24, kind: 'msi', message: msi(0x41) });
      expect(run.leftover, what).toEqual({ connected: 0, gsis: [], irqfd: false });
      expect(kvmFds(), what).toEqual(baseline.kvm);
      expect(fdCount(), what).toBe(baseline.all);
    }
  });
});
