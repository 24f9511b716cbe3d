// ioeventfds and irqfds on real KVM: guest port writes registered to an eventfd signal it
// without exiting to the VMM, only the matching value with datamatch, and an irqfd routes to a
// GSI of the in-kernel irqchip (and is refused, by name, without one).

import { describe, expect, it } from 'vitest';
import { EFD_CLOEXEC, EFD_NONBLOCK } from '@vmmkit/core/uapi';
import { EXITS_GUEST, KvmError, enterFlatProtectedMode } from '../src/index.js';
import { GUEST_CODE, kvmMissing, kvmRig } from './kvm-rig.js';

const EXITS = 500;

/** The eventfd's counter (read resets it); 0 when it was never signalled. */
function counter(host: { read(fd: number, b: Uint8Array): number }, fd: number): bigint {
  const buf = new Uint8Array(8);
  try {
    host.read(fd, buf);
  } catch {
    return 0n; // EAGAIN: not signalled
  }
  return new DataView(buf.buffer).getBigUint64(0, true);
}

// kvm_pvm is slow and the machine shared: room beyond vitest's 5 s default (a bound, not a measurement).
describe.skipIf(kvmMissing)('KVM eventfds', { timeout: 30_000 }, () => {
  it('a port ioeventfd takes the guest\'s writes without an exit; the port after it still exits', async () => {
    const rig = await kvmRig({ irqchip: 'off' });
    const fd = rig.host.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    try {
      const remove = rig.vm.eventfds.addIoeventfd({ addr: 0x10n, len: 4, pio: true, fd });
      rig.memory.view(GUEST_CODE, EXITS_GUEST.byteLength).set(EXITS_GUEST);
      enterFlatProtectedMode(rig.host, rig.vcpu.fd, GUEST_CODE, { rcx: BigInt(EXITS), rax: 7n });
      rig.vcpu.resume();
      await rig.reports.until(() => rig.reports.done.length === 1);
      expect(counter(rig.host, fd)).toBe(BigInt(EXITS));
      // The rig's port handlers saw none of them (port 0x10 is its progress port).
      expect(rig.reports.progress).toEqual([]);
      expect(rig.vcpu.exits).toBeLessThan(10);
      remove();
      remove(); // once only
    } finally {
      await rig.close();
      rig.host.close(fd);
    }
  });

  it('with datamatch only the matching value signals; other writes exit to the VMM', async () => {
    const rig = await kvmRig({ irqchip: 'off' });
    const fd = rig.host.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    try {
      rig.vm.eventfds.addIoeventfd({ addr: 0x10n, len: 4, pio: true, fd, datamatch: 8n });
      rig.memory.view(GUEST_CODE, EXITS_GUEST.byteLength).set(EXITS_GUEST);
      enterFlatProtectedMode(rig.host, rig.vcpu.fd, GUEST_CODE, { rcx: 20n, rax: 7n });
      rig.vcpu.resume();
      await rig.reports.until(() => rig.reports.done.length === 1);
      expect(counter(rig.host, fd)).toBe(0n);
      expect(rig.reports.progress).toEqual(new Array(20).fill(7));
      // A second registration at the same place is refused by KVM, and named.
      const e = (() => { try { rig.vm.eventfds.addIoeventfd({ addr: 0x10n, len: 4, pio: true, fd, datamatch: 8n }); } catch (x) { return x; } })();
      expect(e).toBeInstanceOf(KvmError);
      expect((e as KvmError).step).toBe('register an ioeventfd at port 0x10');
    } finally {
      await rig.close();
      rig.host.close(fd);
    }
  });

  it('an irqfd routes to a GSI of the in-kernel irqchip, and is refused without one', async () => {
    const withChip = await kvmRig({ irqchip: 'auto' });
    const fd = withChip.host.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    try {
      if (withChip.vm.irqchip) {
        const remove = withChip.vm.eventfds.addIrqfd(fd, 5);
        remove();
      }
    } finally {
      await withChip.close();
    }
    const without = await kvmRig({ irqchip: 'off' });
    try {
      expect(() => without.vm.eventfds.addIrqfd(fd, 5)).toThrow(/GSI 5: the VM has no in-kernel irqchip/);
    } finally {
      await without.close();
      without.host.close(fd);
    }
  });
});
