// The VM's own KVM state: its clock, and where they are in the kernel the irqchip's two PICs
// and IOAPIC (KVM_GET_IRQCHIP / KVM_SET_IRQCHIP per chip id) and the PIT (KVM_GET_PIT2 /
// KVM_SET_PIT2), as QEMU's kvm-i8259, kvm-ioapic and kvm-pit devices carry them. The local
// APICs are per vCPU (vcpu-state.ts).
//
// The PIT's `count_load_time` is the source host's CLOCK_MONOTONIC: it is carried as KVM gave
// it, but means nothing on the destination, and KVM_SET_PIT2 does not use it: the kernel loads
// each counter again from `count`, stamping channels 1 and 2 with the time of the load and
// restarting channel 0's timer there (channel 0 counts on that timer; its count_load_time is
// kept as given, and reads 0 for a counter only the guest programmed). So every counter
// restarts its current period at the switchover, as with QEMU's kvm-pit. (Seen on kvm_pvm.)

import type { HostKernel } from '@vmmkit/core';
import { KVM_GET_IRQCHIP, KVM_GET_PIT2, KVM_SET_IRQCHIP, KVM_SET_PIT2, kvm_irqchip, kvm_pit_state2 } from '@vmmkit/core/uapi';
import { KvmError } from '../kvm-errors.js';
import type { KvmVm } from '../kvm-vm.js';
import { KvmStateError, type VmSections } from './kvm-state-format.js';
import { IRQCHIPS, type IrqchipName } from './vm-device-checks.js';

/** The chips in restore order: the PICs (master first, whose cascade the slave feeds), then the IOAPIC. */
const CHIPS: readonly IrqchipName[] = ['PIC_MASTER', 'PIC_SLAVE', 'IOAPIC'];

export class VmState {
  constructor(private readonly host: HostKernel, private readonly vm: KvmVm) {}

  /** Read the clock, and the irqchip's chips and the PIT where the VM has them. */
  save(): VmSections {
    const out: { -readonly [K in keyof VmSections]: VmSections[K] } = { CLOCK: this.vm.getClock() };
    if (this.vm.irqchip) for (const name of CHIPS) out[name] = this.readIrqchip(name);
    if (this.vm.pit) out.PIT = this.readPit();
    return out;
  }

  /**
   * Check that `state` (decoded, so each section valid in itself) fits this VM, setting nothing:
   * the irqchip and the PIT are in the kernel here exactly where they were on the source.
   * @throws KvmStateError naming what does not fit.
   */
  check(state: VmSections): void {
    const fail = (what: string): never => { throw new KvmStateError(`KVM state: ${what}`); };
    const theirs = state.IOAPIC !== undefined;
    if (theirs !== this.vm.irqchip) {
      fail(theirs ? 'the source had an in-kernel irqchip, this VM has none (irqchip=off)' : 'the source had no in-kernel irqchip, this VM has one: its PICs and IOAPIC would start reset');
    }
    if ((state.PIT !== undefined) !== this.vm.pit) {
      fail(state.PIT ? 'the source had an in-kernel PIT, this VM has none (pit=off)' : 'the source had no in-kernel PIT, this VM has one');
    }
  }

  /** Set what `check` accepted: the clock, the chips in order, the PIT. */
  load(state: VmSections): void {
    this.vm.setClock(state.CLOCK);
    for (const name of CHIPS) {
      const bytes = state[name];
      if (bytes) KvmError.wrap(`restore the irqchip's ${name}`, () => this.host.ioctl(this.vm.fd, KVM_SET_IRQCHIP, bytes.slice()));
    }
    const pit = state.PIT;
    if (pit) KvmError.wrap('restore the PIT', () => this.host.ioctl(this.vm.fd, KVM_SET_PIT2, pit.slice()));
  }

  /** One chip of the in-kernel irqchip, as a kvm_irqchip. */
  readIrqchip(name: IrqchipName): Uint8Array {
    const buf = kvm_irqchip.encode({ chip_id: IRQCHIPS[name] });
    KvmError.wrap(`read the irqchip's ${name}`, () => this.host.ioctl(this.vm.fd, KVM_GET_IRQCHIP, buf));
    return buf;
  }

  /** The in-kernel PIT, as a kvm_pit_state2. */
  readPit(): Uint8Array {
    const buf = kvm_pit_state2.encode();
    KvmError.wrap('read the PIT', () => this.host.ioctl(this.vm.fd, KVM_GET_PIT2, buf));
    return buf;
  }
}
