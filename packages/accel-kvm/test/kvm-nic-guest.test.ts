// A real guest drives a VFIO device: the nic-ring guest on KVM finds the simulated nic through
// config mechanism #1, places its BARs, and receives packets the nic DMAs into the real guest
// RAM that KVM maps.

import { describe, expect, it } from 'vitest';
import { NIC_RX_HEAD, NIC_RX_PACKETS, NIC_RX_TAIL, makePacket } from '@vmmkit/sim';
import { NIC_RING_PARAM, NIC_RING_PARAMS_SIZE, nicRingGuestError } from '../src/index.js';
import { kvmMissing } from './kvm-rig.js';
import { loadNicGuest, NIC_GUEST, NIC_GUEST_PARAMS, nicVmm, simClock } from './kvm-nic-machine.js';

describe.skipIf(kvmMissing)('the nic-ring guest on KVM', () => {
  it.for(['legacy', 'iommufd'] as const)('finds the nic, places its BARs and checks the packets it receives (%s backend)', { timeout: 60_000 }, async (backend) => {
    const { host, vmm, accel, nic, reports } = await nicVmm({ backend });
    const stopClock = simClock(host);
    try {
      loadNicGuest(vmm, accel);
      vmm.resume('test');
      await reports.until(() => (reports.checked.at(-1) ?? 0) >= 200 || reports.errors.length > 0);
      expect(reports.errors.map(nicRingGuestError)).toEqual([]);
      expect(reports.hello).toEqual([NIC_GUEST.seed]);
      // The guest's config cycles placed the BARs; the host bridge decodes them.
      expect(accel.pciHost!.windows.windows.map((w) => [w.bar, w.space, w.start])).toEqual([[0, 'mem', 0xe000_0000n], [2, 'mem', 0xe010_0000n]]);
      expect((await nic.configRead(0x04, 2)) & 0x6).toBe(0x6);
      vmm.pause('check');
      await accel.pauseVcpus();
      // What the guest checked is in the ring in its RAM, as the nic sent it.
      const tail = Number(await nic.barRead(0, NIC_RX_TAIL, 4));
      const last = (tail + NIC_GUEST.slots - 1) % NIC_GUEST.slots;
      const seq = BigInt(reports.checked.at(-1)! - 1);
      const slot = vmm.memory.view(BigInt(NIC_GUEST.ring + last * NIC_GUEST.packetSize), NIC_GUEST.packetSize);
      expect(slot).toEqual(makePacket(seq, NIC_GUEST.packetSize, NIC_GUEST.nicSeed));
      expect(Number(await nic.barRead(0, NIC_RX_PACKETS, 8))).toBeGreaterThanOrEqual(reports.checked.at(-1)!);
      expect(Number(await nic.barRead(0, NIC_RX_HEAD, 4))).toBeLessThan(NIC_GUEST.slots);
      expect(accel.stopped).toEqual([]);
    } finally {
      stopClock();
      await vmm.close();
    }
  });

  it('catches a packet whose payload is not what the nic sent', { timeout: 60_000 }, async () => {
    const { host, vmm, accel, nic, reports } = await nicVmm();
    const stopClock = simClock(host);
    try {
      loadNicGuest(vmm, accel);
      vmm.resume('test');
      await reports.until(() => (reports.checked.at(-1) ?? 0) >= 20 || reports.errors.length > 0);
      vmm.pause('corrupt');
      await accel.pauseVcpus();
      // While the guest stands, the nic fills its ring: spoil one word of the next packet it will read.
      host.sim.advance(5);
      // The guest may stand anywhere in a poll: its next packet is the one its state names.
      const seq = new DataView(vmm.memory.view(NIC_GUEST_PARAMS, NIC_RING_PARAMS_SIZE).slice().buffer).getUint32(NIC_RING_PARAM.nextSeq, true);
      expect(Number(await nic.barRead(0, NIC_RX_PACKETS, 8))).toBeGreaterThan(seq);
      // No packet is dropped unwritten, so packet n is in slot n mod slots.
      const payload = vmm.memory.view(BigInt(NIC_GUEST.ring + (seq % NIC_GUEST.slots) * NIC_GUEST.packetSize + 100), 1);
      payload[0]! ^= 0x40;
      vmm.resume('test');
      await reports.until(() => reports.errors.length > 0);
      expect(reports.errors.map(nicRingGuestError)).toEqual([{ code: 6, what: 'payload', seq }]);
    } finally {
      stopClock();
      await vmm.close();
    }
  });

  it('receives with MSI-X interrupts: the nic\'s messages reach the guest\'s local APIC through KVM_SIGNAL_MSI', { timeout: 60_000 }, async () => {
    const { host, vmm, accel, nic, reports } = await nicVmm();
    const stopClock = simClock(host);
    try {
      expect(accel.vm.irqchip).toBe(true);
      loadNicGuest(vmm, accel, { ...NIC_GUEST, msix: { vector: 0x41, batch: 8, tables: 0x2000 } });
      vmm.resume('test');
      await reports.until(() => (reports.checked.at(-1) ?? 0) >= 100 || reports.errors.length > 0);
      expect(reports.errors.map(nicRingGuestError)).toEqual([]);
      expect(nic.interruptMode).toBe('msix');
      const state = new DataView(vmm.memory.view(NIC_GUEST_PARAMS, NIC_RING_PARAMS_SIZE).slice().buffer);
      // The guest polls only after an interrupt: it took at least one per poll that found packets.
      expect(state.getUint32(NIC_RING_PARAM.interrupts, true)).toBeGreaterThanOrEqual(reports.checked.length);
      expect(accel.msiErrors).toEqual([]);
      expect(accel.stopped).toEqual([]);
    } finally {
      stopClock();
      await vmm.close();
    }
  });
});
