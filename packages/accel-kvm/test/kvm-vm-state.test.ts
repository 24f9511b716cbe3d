// The VM-level KVM state on the real /dev/kvm: what a guest programmed into the in-kernel PICs,
// IOAPIC and PIT reads back the same in a second VM loaded with the source's record; a guest
// taking the PIT's ticks through the IOAPIC goes on taking them after a migration; a record
// that is corrupt, cut short, of another version, from a VM shaped otherwise, or from a TSC
// this host cannot match is refused (KvmStateError) with nothing set; and the PIT follows the
// irqchip as configured.

import { describe, expect, it } from 'vitest';
import { ConfigError, VmmError } from '@vmmkit/core';
import { migrate } from '@vmmkit/migration';
import { KVM_CAP_TSC_CONTROL, kvm_irqchip, kvm_pit_state2 } from '@vmmkit/core/uapi';
import {
  DEVICES_GUEST, TICKS_GUEST, decodeKvmState, encodeKvmState, enterFlatProtectedMode, KvmStateError, readTscKhz, tscKhzOf,
  tscKhzSection, type KvmAccel, type KvmState,
} from '../src/index.js';
import { GUEST_CODE, kvmMissing } from './kvm-rig.js';
import { kvmVmm } from './kvm-machine.js';

type Machine = Awaited<ReturnType<typeof kvmVmm>>;

/** The source after the devices guest programmed its PICs, IOAPIC and PIT (and halted), paused. */
async function programmedSource(): Promise<Machine> {
  const src = await kvmVmm();
  try {
    src.vmm.memory.view(GUEST_CODE, DEVICES_GUEST.byteLength).set(DEVICES_GUEST);
    enterFlatProtectedMode(src.host, src.accel.vcpus[0]!.fd, GUEST_CODE);
    src.vmm.resume('test');
    await src.reports.until(() => src.reports.done.length === 1);
    src.vmm.pause('test');
    await src.accel.quiesced();
    // The PIT's first tick (about 4 ms on) latches IRQ 0 in the master PIC: wait for it, so that
    // the state saved is the one a destination comes to (it ticks once again after the load).
    const deadline = Date.now() + 5_000;
    while ((kvm_irqchip.decode(stateOf(src.accel).vm.PIC_MASTER!).pic.irr & 1) === 0) {
      if (Date.now() > deadline) throw new Error('the PIT never ticked');
      await new Promise((r) => setTimeout(r, 5));
    }
    return src;
  } catch (e) {
    await src.vmm.close();
    throw e;
  }
}

/** The accelerator's state, decoded. */
const stateOf = (accel: KvmAccel): KvmState => decodeKvmState(accel.saveState(), accel.vcpus.length);
/** The PIT's counters without their load time (the host's clock at the last load, restamped by KVM_SET_PIT2). */
function pitCounters(pit: Uint8Array) {
  const { channels, flags } = kvm_pit_state2.decode(pit);
  return { flags, channels: channels.map(({ count_load_time: _t, ...c }) => c) };
}
/** What must not change when a load is refused: the devices and the vCPU's registers (the clock runs on). */
function devicesAndRegs(s: KvmState) {
  const { CLOCK: _c, ...devices } = s.vm;
  return { devices: { ...devices, PIT: devices.PIT && pitCounters(devices.PIT) }, regs: s.vcpus[0]!.REGS, sregs: s.vcpus[0]!.SREGS };
}

// kvm_pvm is slow and the machine shared: room beyond vitest's 5 s default (a bound, not a measurement).
describe.skipIf(kvmMissing)('the VM-level KVM state', { timeout: 60_000 }, () => {
  it('carries what the guest programmed into the PICs, IOAPIC and PIT to a second VM', async () => {
    const src = await programmedSource();
    const dst = await kvmVmm({ incoming: true });
    try {
      const saved = src.accel.saveState();
      const theirs = decodeKvmState(saved, 1).vm;
      // The source's chips hold what the guest wrote, not their reset state.
      const master = kvm_irqchip.decode(theirs.PIC_MASTER!).pic;
      const slave = kvm_irqchip.decode(theirs.PIC_SLAVE!).pic;
      expect([master.irq_base, master.imr, slave.irq_base, slave.imr, slave.elcr]).toEqual([0x20, 0xfb, 0x28, 0xbf, 0x0e]);
      const ioapic = kvm_irqchip.decode(theirs.IOAPIC!).ioapic;
      expect(ioapic.redirtbl).toEqual(Array.from({ length: 24 }, (_, i) => (BigInt(i) << 56n) | 0x1_0000n | BigInt(0x30 + i)));
      const pit = kvm_pit_state2.decode(theirs.PIT!).channels;
      expect(pit.map((c) => [c.count, c.mode])).toEqual([[0x1234, 2], [0x1_0000, 0xff], [0x533, 3]]);
      // The destination starts reset.
      const before = stateOf(dst.accel).vm;
      expect(before.IOAPIC).not.toEqual(theirs.IOAPIC);
      expect(before.PIC_MASTER).not.toEqual(theirs.PIC_MASTER);

      const loadedAt = process.hrtime.bigint();
      dst.accel.loadState(saved);
      const mine = stateOf(dst.accel).vm;
      expect(mine.PIC_MASTER).toEqual(theirs.PIC_MASTER);
      expect(mine.PIC_SLAVE).toEqual(theirs.PIC_SLAVE);
      expect(mine.IOAPIC).toEqual(theirs.IOAPIC);
      expect(pitCounters(mine.PIT!)).toEqual(pitCounters(theirs.PIT!));
      // KVM_SET_PIT2 loads each counter again: channel 2 counts from the load, on this host's
      // CLOCK_MONOTONIC (which process.hrtime reads), not from the source's time.
      const loadTimes = kvm_pit_state2.decode(mine.PIT!).channels.map((c) => c.count_load_time);
      expect(loadTimes[2]).toBeGreaterThanOrEqual(loadedAt);
      expect(pit[2]!.count_load_time).toBeLessThan(loadedAt);
    } finally {
      await src.vmm.close();
      await dst.vmm.close();
    }
  });

  it('a guest taking the PIT\'s ticks through the IOAPIC takes the next one on the destination', async () => {
    const src = await kvmVmm();
    const dst = await kvmVmm({ incoming: true });
    try {
      src.vmm.memory.view(GUEST_CODE, TICKS_GUEST.byteLength).set(TICKS_GUEST);
      enterFlatProtectedMode(src.host, src.accel.vcpus[0]!.fd, GUEST_CODE, { rbx: 0x4000n, rsp: 0x8000n });
      src.vmm.resume('test');
      await src.reports.until(() => src.reports.progress.length >= 3);
      await migrate(src.vmm, dst.vmm, { downtimeLimitMs: 0, maxIterations: 2 });
      expect(dst.vmm.running).toBe(true);
      // On the destination the IOAPIC still routes pin 2 and the PIT still runs: the count goes on
      // from the source's last, none lost, none twice (reset chips would leave it silent).
      await dst.reports.until(() => dst.reports.progress.length >= 3);
      const last = src.reports.progress.at(-1)!;
      expect(src.reports.progress).toEqual(Array.from({ length: last }, (_, i) => i + 1));
      expect(dst.reports.progress.slice(0, 3)).toEqual([last + 1, last + 2, last + 3]);
      expect(dst.accel.stopped).toEqual([]);
    } finally {
      await src.vmm.close();
      await dst.vmm.close();
    }
  });

  it('carries each vCPU\'s TSC rate, and keeps it when this host runs at it already', async () => {
    const src = await kvmVmm();
    const dst = await kvmVmm({ incoming: true });
    try {
      const saved = stateOf(src.accel);
      const khz = tscKhzOf(saved.vcpus[0]!.TSC_KHZ!);
      expect(khz).toBe(readTscKhz(src.host, src.accel.vcpus[0]!.fd, 0));
      expect(khz).toBeGreaterThan(100_000); // a real rate: above 100 MHz
      dst.accel.loadState(encodeKvmState(saved));
      expect(readTscKhz(dst.host, dst.accel.vcpus[0]!.fd, 0)).toBe(khz);
    } finally {
      await src.vmm.close();
      await dst.vmm.close();
    }
  });

  it('refuses, before setting anything, records that are corrupt, short, of another version or shaped otherwise', async () => {
    const src = await programmedSource();
    const dst = await kvmVmm({ incoming: true });
    try {
      const saved = src.accel.saveState();
      const state = decodeKvmState(saved, 1);
      const scales = dst.accel.vm.system.extension(KVM_CAP_TSC_CONTROL) !== 0;
      const otherTsc = tscKhzOf(state.vcpus[0]!.TSC_KHZ!) - 1000;
      const withVersion = (version: number) => {
        const b = saved.slice();
        new DataView(b.buffer).setUint16(8, version, true);
        return b;
      };
      const ioapicAs = (edit: (b: Uint8Array, v: DataView) => void) => {
        const IOAPIC = state.vm.IOAPIC!.slice();
        edit(IOAPIC, new DataView(IOAPIC.buffer));
        return encodeKvmState({ vm: { ...state.vm, IOAPIC }, vcpus: state.vcpus });
      };
      const cases: [string, Uint8Array, RegExp][] = [
        ['cut short', saved.subarray(0, saved.byteLength - 100), /cut off/],
        ['version 1', withVersion(1), /version 1 predates/],
        ['an unknown version', withVersion(7), /version 7, this vmmkit reads 2/],
        ['an IOAPIC with another chip id', ioapicAs((_, v) => v.setUint32(0, 1, true)), /IOAPIC of the VM: chip id 1/],
        ['an IOAPIC with a 25th redirection entry', ioapicAs((b) => { b[8 + 216] = 0x48; }), /after its 24 redirection entries/],
        ['a source without an in-kernel irqchip', encodeKvmState({ vm: { CLOCK: state.vm.CLOCK }, vcpus: state.vcpus.map(({ LAPIC: _l, ...v }) => v) }), /the source had no in-kernel irqchip, this VM has one/],
        ['a source without an in-kernel PIT', encodeKvmState({ vm: { ...state.vm, PIT: undefined }, vcpus: state.vcpus }), /the source had no in-kernel PIT/],
        ['a vCPU with another CPUID', encodeKvmState({ vm: state.vm, vcpus: [{ ...state.vcpus[0]!, CPUID: state.vcpus[0]!.CPUID!.map((b, i) => (i === 20 ? b ^ 1 : b)) }] }), /another CPUID/],
      ];
      // Without TSC scaling (kvm_pvm has none) a source TSC 1 MHz slower than this host's is refused.
      if (!scales) cases.push(['a TSC rate this host cannot scale to', encodeKvmState({ vm: state.vm, vcpus: [{ ...state.vcpus[0]!, TSC_KHZ: tscKhzSection(otherTsc) }] }), new RegExp(`TSC ran at ${otherTsc} kHz on the source, it runs at ${otherTsc + 1000} kHz here, and KVM cannot scale it`)]);
      const untouched = devicesAndRegs(stateOf(dst.accel));
      for (const [what, bytes, message] of cases) {
        let error: unknown;
        try {
          dst.accel.loadState(bytes);
        } catch (e) {
          error = e;
        }
        expect(error, what).toBeInstanceOf(KvmStateError);
        expect((error as Error).message, what).toMatch(message);
        expect(devicesAndRegs(stateOf(dst.accel)), what).toEqual(untouched);
      }
      // The record itself still loads after all that.
      dst.accel.loadState(saved);
      expect(stateOf(dst.accel).vm.IOAPIC).toEqual(state.vm.IOAPIC);
    } finally {
      await src.vmm.close();
      await dst.vmm.close();
    }
  });

  it('has an in-kernel PIT with the irqchip unless pit=off, and none without the irqchip', async () => {
    const noPit = await kvmVmm({ device: 'kvm,id=kvm0,pit=off' });
    const none = await kvmVmm({ device: 'kvm,id=kvm0,irqchip=off' });
    try {
      expect([noPit.accel.vm.irqchip, noPit.accel.vm.pit]).toEqual([true, false]);
      expect(Object.keys(stateOf(noPit.accel).vm).sort()).toEqual(['CLOCK', 'IOAPIC', 'PIC_MASTER', 'PIC_SLAVE']);
      expect(Object.keys(stateOf(none.accel).vm)).toEqual(['CLOCK']);
      // A record with a PIT does not load where there is none.
      const src = await kvmVmm();
      try {
        expect(() => noPit.accel.loadState(src.accel.saveState())).toThrow(/the source had an in-kernel PIT, this VM has none/);
      } finally {
        await src.vmm.close();
      }
      await none.vmm.removeDevice('kvm0');
      const e = await none.vmm.addDevice('kvm,id=kvm0,irqchip=off,pit=on').catch((x: unknown) => x);
      expect(e).toBeInstanceOf(VmmError);
      expect(e).not.toBeInstanceOf(ConfigError);
      expect((e as Error).message).toMatch(/pit=on needs the in-kernel irqchip/);
    } finally {
      await noPit.vmm.close();
      await none.vmm.close();
    }
  });
});
