// A vfio-user nic under a KVM guest on LinuxHost: the server shares BAR2's memory through a
// memfd, the client mmaps its two sparse areas, and KVM maps them where the guest puts the BAR.
// The guest's accesses to that memory reach the model's memory without exits; its doorbell write
// (in the register page between the areas) still reaches the model (as a region write, or
// through the device's ioeventfd where it gives one).

import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NIC_BAR2_REG_PAGE, NIC_DOORBELL, type SimPciModel } from '@vmmkit/sim';
import { BAR_MEMORY_GUEST, enterFlatProtectedMode } from '../src/index.js';
import { configAddress } from './fake-bar-function.js';
import { GUEST_CODE, kvmMissing } from './kvm-rig.js';
import { kvmVfioUserMachine, slotOf } from './kvm-vfio-user-machine.js';

const BAR2 = 0xe010_0000n;
const AREA = NIC_BAR2_REG_PAGE + 0x1000; // the second mmap area
const DWORDS = 2048;
const SEED = 0x600d_f00d;
const fds = (): number => readdirSync('/proc/self/fd').length;

// kvm_pvm is slow and the machine shared: room beyond vitest's 5 s default (a bound, not a measurement).
describe.skipIf(kvmMissing)('a vfio-user device\'s mmapped BAR under KVM', { timeout: 60_000 }, () => {
  it('the guest reaches BAR2\'s memory in the server\'s model without exits; the doorbell still reaches the model', async () => {
    const fdsBefore = fds();
    const served: string[] = [];
    let modelRead: SimPciModel['barRead'] | undefined;
    const m = await kvmVfioUserMachine({
      beforeServing: (model) => {
        const read = model.barRead.bind(model);
        modelRead = read;
        const write = model.barWrite.bind(model);
        model.barRead = (bar, offset, size) => (served.push(`r${bar} ${offset.toString(16)}`), read(bar, offset, size));
        model.barWrite = (bar, offset, size, value) => (served.push(`w${bar} ${offset.toString(16)}`), write(bar, offset, size, value));
      },
    });
    try {
      const slot = slotOf(m.vmm, m.device);
      // The client mapped BAR2's areas from the server's memfd: process memory KVM can map.
      expect(m.device.barMemory(2).map((p) => [p.offset, p.size, p.mapping.processAddress])).toEqual([
        [0n, BigInt(NIC_BAR2_REG_PAGE), true], [BigInt(AREA), 0x10000n - BigInt(AREA), true],
      ]);
      // The accesses that exit reach the device's BAR accessors (which serve mmapped parts from the mapping).
      const trapped: string[] = [];
      const barRead = m.device.barRead.bind(m.device);
      const barWrite = m.device.barWrite.bind(m.device);
      m.device.barRead = (bar, offset, size) => (trapped.push(`r${bar} ${offset.toString(16)}`), barRead(bar, offset, size));
      m.device.barWrite = (bar, offset, size, value) => (trapped.push(`w${bar} ${offset.toString(16)}`), barWrite(bar, offset, size, value));
      m.vmm.memory.view(GUEST_CODE, BAR_MEMORY_GUEST.byteLength).set(BAR_MEMORY_GUEST);
      enterFlatProtectedMode(m.host, m.accel.vcpus[0]!.fd, GUEST_CODE, {
        rbx: BigInt(configAddress(slot, 0x18)), rsi: BAR2, rdi: BigInt(AREA), rcx: BigInt(DWORDS), rax: BigInt(SEED), rbp: BigInt(NIC_DOORBELL),
      });
      const exitsBefore = m.accel.vcpus[0]!.exits;
      m.vmm.resume('test');
      await m.reports.until(() => m.reports.done.length === 1);
      m.vmm.pause('test');
      await m.accel.quiesced();
      const expected = Number((BigInt(SEED) * BigInt(DWORDS) + BigInt(DWORDS * (DWORDS - 1) / 2)) & 0xffff_ffffn);
      expect(m.reports.hello).toEqual([expected]);
      // 4096 accesses to BAR2's memory and none exited: at most the doorbell did (it exits unless the
      // device gives an ioeventfd for it), besides the config cycles and the reports.
      expect(trapped.filter((a) => a !== `w2 ${NIC_DOORBELL.toString(16)}`)).toEqual([]);
      expect(m.accel.vcpus[0]!.exits - exitsBefore).toBeLessThan(30);
      // The doorbell is a posted write: the model counts it a moment later. The server served nothing else.
      const doorbells = (): bigint => modelRead!(2, NIC_DOORBELL, 4) as bigint;
      for (const end = Date.now() + 10_000; doorbells() === 0n && Date.now() < end;) await new Promise((r) => setTimeout(r, 5));
      expect(doorbells()).toBe(1n);
      expect(served.filter((a) => a !== `w2 ${NIC_DOORBELL.toString(16)}`)).toEqual([]);
      for (let i = 0; i < DWORDS; i += 97) expect(modelRead!(2, AREA + 4 * i, 4), `dword ${i}`).toBe(BigInt((SEED + i) >>> 0));
      expect(m.accel.vm.memslots.deviceSlots.map((s) => [s.gpa, s.size])).toEqual([[BAR2, BigInt(NIC_BAR2_REG_PAGE)], [BAR2 + BigInt(AREA), 0x10000n - BigInt(AREA)]]);
      // Unplugged: the slots go before the device unmaps its areas.
      await m.vmm.removeDevice('dev0');
      expect(m.accel.vm.memslots.deviceSlots).toEqual([]);
      expect(m.accel.barMappings.errors).toEqual([]);
    } finally {
      await m.close();
    }
    expect(fds()).toBe(fdsBefore);
  });
});
