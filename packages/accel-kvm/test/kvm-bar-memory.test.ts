// BAR memory as KVM memslots and BAR doorbells as KVM ioeventfds, on a real KVM VM with a PCI
// function whose BAR0 is partly memfd memory: a guest that places the BAR and enables memory
// decoding through config cycles reaches that memory at once without exits (the bytes are in
// the function's mapping), its doorbell write signals the eventfd instead of reaching barWrite;
// moving the BAR, turning decoding off and unplugging the function remove exactly the slots and
// the ioeventfd that were added for it. An I/O BAR's doorbell becomes a port ioeventfd.

import { describe, expect, it } from 'vitest';
import { PCI_COMMAND, PCI_COMMAND_IO, PCI_COMMAND_MEMORY } from '@vmmkit/core/uapi';
import { BAR_MEMORY_GUEST, MMIO_GUEST, enterFlatProtectedMode, type KvmAccel } from '../src/index.js';
import { FAKE_DOORBELL, FAKE_HIGH_PART, FAKE_IO_DOORBELL, FAKE_LOW_PART, FakeBarFunction, configAddress, configRead, configWrite } from './fake-bar-function.js';
import { kvmVmm } from './kvm-machine.js';
import { GUEST_CODE, kvmMissing, type GuestReports } from './kvm-rig.js';

const BASE = 0xe000_0000n;
const MOVED = 0xe010_0000n;

/** The sum the guest reports for `count` dwords from `seed`. */
const sumOf = (seed: number, count: number): number => Number((BigInt(seed) * BigInt(count) + BigInt(count * (count - 1) / 2)) & 0xffff_ffffn);

/** Run the BAR memory guest once on vCPU 0 (the VM paused before and after); resolves when it reported done. */
async function runBarGuest(
  m: { vmm: Awaited<ReturnType<typeof kvmVmm>>['vmm']; accel: KvmAccel; reports: GuestReports },
  o: { slot: number; base: bigint; offset: number; dwords: number; seed: number; doorbell: number },
): Promise<void> {
  const done = m.reports.done.length;
  m.vmm.memory.view(GUEST_CODE, BAR_MEMORY_GUEST.byteLength).set(BAR_MEMORY_GUEST);
  enterFlatProtectedMode(m.vmm.host, m.accel.vcpus[0]!.fd, GUEST_CODE, {
    rbx: BigInt(configAddress(o.slot, 0x10)), rsi: o.base, rdi: BigInt(o.offset), rcx: BigInt(o.dwords), rax: BigInt(o.seed), rbp: BigInt(o.doorbell),
  });
  m.vmm.resume('test');
  await m.reports.until(() => m.reports.done.length > done);
  m.vmm.pause('test');
  await m.accel.quiesced();
}

// kvm_pvm is slow and the machine shared: room beyond vitest's 5 s default (a bound, not a measurement).
describe.skipIf(kvmMissing)('BAR memory and doorbells served by KVM', { timeout: 60_000 }, () => {
  it('a guest reaches BAR memory without exits right after enabling it, rings the doorbell through the eventfd; moving, disabling and unplugging remove exactly what was added', async () => {
    let fn: FakeBarFunction | undefined;
    const m = await kvmVmm({ beforeAccel: (vmm) => { fn = new FakeBarFunction(vmm.host); vmm.pciBus.plug(fn); } });
    const f = fn!;
    try {
      const slot = 1;
      const ramSlots = m.accel.vm.memslots.slots.map((s) => s.slot);
      // Placed and enabled by the guest itself: its first accesses after the config write hit the memory.
      await runBarGuest(m, { slot, base: BASE, offset: FAKE_HIGH_PART.offset, dwords: 1024, seed: 0x1234_5678, doorbell: FAKE_DOORBELL });
      expect(m.reports.hello).toEqual([sumOf(0x1234_5678, 1024)]);
      expect(f.accesses).toEqual([]); // 2048 accesses and a doorbell, none trapped
      const high = new DataView(f.high.bytes.buffer, f.high.bytes.byteOffset, 4096);
      for (let i = 0; i < 1024; i++) expect(high.getUint32(4 * i, true)).toBe((0x1234_5678 + i) >>> 0);
      expect(f.doorbells()).toBe(1n);
      expect(m.accel.barMappings.errors).toEqual([]);
      const slots = m.accel.vm.memslots.deviceSlots;
      expect(slots.map((s) => [s.gpa, s.size])).toEqual([[BASE, 0x4000n], [BASE + 0x8000n, 0x8000n]]);
      // Their own slot numbers, none a RAM slot's; and never part of the RAM slots (not dirty-logged, not migrated).
      expect(slots.filter((s) => ramSlots.includes(s.slot))).toEqual([]);
      expect(m.accel.vm.memslots.slots.map((s) => s.slot)).toEqual(ramSlots);
      expect(m.accel.barMappings.mapped.map((b) => [b.fn.id, b.bar, b.start, b.ioeventfds])).toEqual([['fake0', 0, BASE, [BASE + BigInt(FAKE_DOORBELL)]]]);

      // Moved by the guest while decoding: the new place is memory at once, the old one is gone.
      await runBarGuest(m, { slot, base: MOVED, offset: FAKE_LOW_PART.offset, dwords: 256, seed: 7, doorbell: 0 });
      expect(m.reports.hello.at(-1)).toBe(sumOf(7, 256));
      expect(f.accesses).toEqual([]);
      expect(new DataView(f.low.bytes.buffer, f.low.bytes.byteOffset).getUint32(4 * 255, true)).toBe(7 + 255);
      expect(m.accel.vm.memslots.deviceSlots.map((s) => s.gpa)).toEqual([MOVED, MOVED + 0x8000n]);
      // An access at the old address exits and nothing decodes it (reads all ones); the memory is untouched.
      m.vmm.memory.view(GUEST_CODE, MMIO_GUEST.byteLength).set(MMIO_GUEST);
      enterFlatProtectedMode(m.vmm.host, m.accel.vcpus[0]!.fd, GUEST_CODE, { rax: 0xdeadn, rdi: BASE });
      const unassigned = m.accel.io.unassigned.mmio;
      m.vmm.resume('test');
      await m.reports.until(() => m.reports.hello.length === 4);
      m.vmm.pause('test');
      await m.accel.quiesced();
      expect(m.reports.hello.slice(2)).toEqual([0xffff_ffff, 0xff]);
      expect(m.accel.io.unassigned.mmio - unassigned).toBe(3);
      expect(new DataView(f.low.bytes.buffer, f.low.bytes.byteOffset).getUint32(0, true)).toBe(7);

      // Decoding off (a config write through the bridge): no slot, no ioeventfd is left for it.
      const command = await configRead(m.accel.io, slot, PCI_COMMAND, 2);
      await configWrite(m.accel.io, slot, PCI_COMMAND, 2, command & ~PCI_COMMAND_MEMORY);
      expect(m.accel.vm.memslots.deviceSlots).toEqual([]);
      expect(m.accel.barMappings.mapped).toEqual([]);
      // The ioeventfd is gone: KVM takes the same one again (it refuses a duplicate with EEXIST).
      m.accel.vm.eventfds.addIoeventfd({ addr: MOVED + BigInt(FAKE_DOORBELL), len: 4, pio: false, fd: f.eventfd })();
      // On again, then unplugged: the slots go before the function is unrealized.
      await configWrite(m.accel.io, slot, PCI_COMMAND, 2, command);
      expect(m.accel.vm.memslots.deviceSlots).toHaveLength(2);
      m.vmm.pciBus.unplug(f);
      expect(m.accel.vm.memslots.deviceSlots).toEqual([]);
      expect(m.accel.barMappings.mapped).toEqual([]);
      expect(m.accel.barMappings.errors).toEqual([]);
    } finally {
      m.vmm.pciBus.unplug(f);
      await m.vmm.close();
      await f.unrealize();
    }
  });

  it('an I/O BAR\'s doorbell becomes a port ioeventfd where the guest put the BAR, and goes with I/O decode', async () => {
    let fn: FakeBarFunction | undefined;
    const m = await kvmVmm({ beforeAccel: (vmm) => { fn = new FakeBarFunction(vmm.host, 'fake0', true); vmm.pciBus.plug(fn); } });
    const f = fn!;
    const port = 0xc000n + BigInt(FAKE_IO_DOORBELL);
    const again = () => m.accel.vm.eventfds.addIoeventfd({ addr: port, len: 4, pio: true, fd: f.eventfd });
    try {
      await configWrite(m.accel.io, 1, 0x18, 4, 0xc000);
      const command = await configRead(m.accel.io, 1, PCI_COMMAND, 2);
      await configWrite(m.accel.io, 1, PCI_COMMAND, 2, command | PCI_COMMAND_IO);
      expect(m.accel.barMappings.mapped.map((b) => [b.bar, b.space, b.start, b.ioeventfds])).toEqual([[2, 'io', 0xc000n, [port]]]);
      // Registered in KVM: the same one again is refused (EEXIST).
      expect(again).toThrow(/register an ioeventfd at port 0xc004: .*EEXIST/);
      await configWrite(m.accel.io, 1, PCI_COMMAND, 2, command & ~PCI_COMMAND_IO);
      expect(m.accel.barMappings.mapped).toEqual([]);
      again()();
      expect(m.accel.barMappings.errors).toEqual([]);
    } finally {
      m.vmm.pciBus.unplug(f);
      await m.vmm.close();
      await f.unrealize();
    }
  });

  it('maps only whole pages of process memory; other parts stay trapped and still reach the function', async () => {
    let fn: FakeBarFunction | undefined;
    const m = await kvmVmm({ beforeAccel: (vmm) => { fn = new FakeBarFunction(vmm.host); vmm.pciBus.plug(fn); } });
    const f = fn!;
    const offered = f.barMemory(0);
    // The low part as a simulated host's mapping (no process address), the high one not whole pages.
    f.barMemory = () => [
      { ...offered[0]!, mapping: { ...offered[0]!.mapping, processAddress: undefined } },
      { ...offered[1]!, size: offered[1]!.size - 0x800n },
    ];
    try {
      await runBarGuest(m, { slot: 1, base: BASE, offset: FAKE_LOW_PART.offset, dwords: 4, seed: 1, doorbell: 0 });
      expect(m.reports.hello).toEqual([sumOf(1, 4)]);
      expect(m.accel.vm.memslots.deviceSlots).toEqual([]);
      expect(f.accesses).toEqual(['w 0', 'w 4', 'w 8', 'w c', 'r 0', 'r 4', 'r 8', 'r c']);
      // Only the doorbell's ioeventfd was registered.
      expect(m.accel.barMappings.mapped.map((b) => b.ioeventfds)).toEqual([[BASE + BigInt(FAKE_DOORBELL)]]);
    } finally {
      m.vmm.pciBus.unplug(f);
      await m.vmm.close();
      await f.unrealize();
    }
  });
});
