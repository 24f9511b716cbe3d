// A vCPU running the pages guest on real KVM: port I/O round trips to the main thread, HLT,
// pause by immediate_exit plus a kick (also out of an in-kernel HLT), resume, and close.

import { describe, expect, it } from 'vitest';
import { VcpuStoppedError, enterFlatProtectedMode } from '../src/index.js';
import { MMIO_GUEST } from '../src/guests/mmio-guest.js';
import { GUEST_CODE, kvmMissing, kvmRig } from './kvm-rig.js';

const DEVICE = 0xd000_0000n;

/** Load the MMIO guest, point it at DEVICE with `value` to write, and let it run. */
function startMmioGuest(rig: Awaited<ReturnType<typeof kvmRig>>, value: bigint): void {
  rig.memory.view(GUEST_CODE, MMIO_GUEST.byteLength).set(MMIO_GUEST);
  enterFlatProtectedMode(rig.host, rig.vcpu.fd, GUEST_CODE, { rax: value, rdi: DEVICE });
  rig.vcpu.resume();
}

/** Wait (up to 10 s) until the vCPU has stopped on its own and is out of the guest. */
async function stoppedOnItsOwn(rig: Awaited<ReturnType<typeof kvmRig>>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (rig.stopped.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  await rig.vcpu.whenStill();
}

// kvm_pvm is slow and the machine shared: room beyond vitest's 5 s default (a bound, not a measurement).
describe.skipIf(kvmMissing)('a vCPU on KVM', { timeout: 30_000 }, () => {
  it('runs the guest: its port I/O reaches the main thread, and HLT (no irqchip) parks it', async () => {
    const rig = await kvmRig({ irqchip: 'off', seed: 0x1234, limit: 1000 });
    try {
      rig.vcpu.resume();
      await rig.reports.until(() => rig.reports.done.length > 0);
      expect(rig.reports.hello).toEqual([0x1234]);
      expect(rig.reports.done).toEqual([1000]);
      expect(rig.reports.progress).toEqual([256, 512, 768]);
      await rig.vcpu.whenStill();
      expect(rig.vcpu.state).toBe('halted');
      expect(rig.stopped).toEqual([]);
    } finally {
      await rig.close();
    }
  });

  it('pauses a running guest with immediate_exit and the kick, and resumes it where it was', async () => {
    const rig = await kvmRig({ seed: 7 });
    try {
      rig.vcpu.resume();
      await rig.reports.until(() => rig.reports.last >= 256 * 20);
      await rig.vcpu.pause();
      expect(rig.vcpu.state).toBe('parked');
      const at = rig.reports.last;
      await new Promise((r) => setTimeout(r, 50));
      expect(rig.reports.last).toBe(at);
      rig.vcpu.resume();
      await rig.reports.until(() => rig.reports.last >= at + 256 * 10);
      // Counting went on from where it stopped: no report was skipped or repeated.
      expect(rig.reports.progress).toEqual(rig.reports.progress.map((_, i) => 256 * (i + 1)));
    } finally {
      await rig.close();
    }
  });

  it('kicks a vCPU halted inside KVM (in-kernel irqchip): pause returns', async () => {
    const rig = await kvmRig({ irqchip: 'auto', limit: 300 });
    try {
      rig.vcpu.resume();
      await rig.reports.until(() => rig.reports.done.length > 0);
      // HLT with an in-kernel irqchip sleeps in KVM_RUN: only the signal gets it out.
      await new Promise((r) => setTimeout(r, 20));
      await rig.vcpu.pause();
      expect(rig.vcpu.state).toBe(rig.vm.irqchip ? 'parked' : 'halted');
    } finally {
      await rig.close();
    }
  });

  it('sends MMIO to the device that claims it: writes carry the bytes, reads return the device\'s', async () => {
    const rig = await kvmRig({ irqchip: 'off' });
    const seen: string[] = [];
    rig.bus.addMmio(DEVICE, 0x1000n, (a) => {
      seen.push(`${a.write ? 'write' : 'read'} +${a.addr - DEVICE} ${a.size}${a.write ? ` ${[...a.data].map((b) => b.toString(16)).join(' ')}` : ''}`);
      if (!a.write) a.data.set(a.size === 4 ? [0x78, 0x56, 0x34, 0x12] : [0xab]);
    });
    try {
      startMmioGuest(rig, 0xcafe_f00dn);
      await rig.reports.until(() => rig.reports.hello.length === 2);
      expect(seen).toEqual(['write +0 4 d f0 fe ca', 'read +4 4', 'read +8 1']);
      expect(rig.reports.hello).toEqual([0x1234_5678, 0xab]);
    } finally {
      await rig.close();
    }
  });

  it('reads all ones where no device is, and stops the vCPU when a device fails', async () => {
    const rig = await kvmRig({ irqchip: 'off' });
    try {
      startMmioGuest(rig, 1n);
      await rig.reports.until(() => rig.reports.hello.length === 2);
      expect(rig.reports.hello).toEqual([0xffff_ffff, 0xff]);
      expect(rig.bus.unassigned.mmio).toBe(3);
    } finally {
      await rig.close();
    }
    const failing = await kvmRig({ irqchip: 'off' });
    failing.bus.addMmio(DEVICE, 0x1000n, () => { throw new Error('device on fire'); });
    try {
      startMmioGuest(failing, 1n);
      await stoppedOnItsOwn(failing);
      expect(failing.stopped[0]).toBeInstanceOf(VcpuStoppedError);
      expect(failing.stopped[0]!.reason).toBe('io-failed');
      expect((failing.stopped[0]!.cause as Error).message).toBe('device on fire');
      expect(failing.vcpu.state).toBe('parked');
      // The failed write completed; the guest got no further.
      expect(failing.reports.hello).toEqual([]);
    } finally {
      await failing.close();
    }
  });

  it('waits in the exit for a device that answers later, and stops the vCPU when its answer is a rejection', async () => {
    const rig = await kvmRig({ irqchip: 'off' });
    const seen: string[] = [];
    rig.bus.addMmio(DEVICE, 0x1000n, async (a) => {
      await new Promise((r) => setTimeout(r, 20));
      seen.push(`${a.write ? 'write' : 'read'} +${a.addr - DEVICE}`);
      if (!a.write) a.data.set(a.size === 4 ? [4, 3, 2, 1] : [0x5a]);
    });
    try {
      startMmioGuest(rig, 7n);
      await rig.reports.until(() => rig.reports.hello.length === 2);
      // Each access completed, in order, with the late answer as the guest's data.
      expect(seen).toEqual(['write +0', 'read +4', 'read +8']);
      expect(rig.reports.hello).toEqual([0x0102_0304, 0x5a]);
    } finally {
      await rig.close();
    }
    const failing = await kvmRig({ irqchip: 'off' });
    failing.bus.addMmio(DEVICE, 0x1000n, async () => {
      await new Promise((r) => setTimeout(r, 5));
      throw new Error('the device went away');
    });
    try {
      startMmioGuest(failing, 1n);
      await stoppedOnItsOwn(failing);
      expect(failing.stopped[0]).toBeInstanceOf(VcpuStoppedError);
      expect(failing.stopped[0]!.reason).toBe('io-failed');
      expect((failing.stopped[0]!.cause as Error).message).toBe('the device went away');
      expect(failing.reports.hello).toEqual([]);
    } finally {
      await failing.close();
    }
  });
});
