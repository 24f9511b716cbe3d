// A vCPU running the pages guest on real KVM: port I/O round trips to the main thread, HLT,
// pause by immediate_exit plus a kick (also out of an in-kernel HLT), resume, and close.

import { describe, expect, it } from 'vitest';
import { kvmMissing, kvmRig } from './kvm-rig.js';

describe.skipIf(kvmMissing)('a vCPU on KVM', () => {
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
});
