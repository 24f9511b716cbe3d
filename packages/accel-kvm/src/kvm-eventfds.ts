// Eventfds KVM signals or listens to without the VMM in the loop: ioeventfds (a guest write to a
// port or an MMIO address signals an eventfd instead of exiting) and irqfds (signalling an
// eventfd raises a GSI of the in-kernel irqchip). The eventfds belong to whoever registers them;
// a registration is undone by the function it returns, or goes with the VM.

import { ArgumentError, type HostKernel } from '@vmmkit/core';
import {
  KVM_IOEVENTFD, KVM_IOEVENTFD_FLAG_DATAMATCH, KVM_IOEVENTFD_FLAG_DEASSIGN, KVM_IOEVENTFD_FLAG_PIO, KVM_IRQFD,
  KVM_IRQFD_FLAG_DEASSIGN, kvm_ioeventfd, kvm_irqfd,
} from '@vmmkit/core/uapi';
import { KvmError } from './kvm-errors.js';

/** An ioeventfd: which guest writes signal `fd`. */
export interface IoeventfdSpec {
  /** The port (`pio`) or guest physical address. */
  readonly addr: bigint;
  /** Width of the write, 1, 2, 4 or 8 bytes (0: any width, MMIO only). */
  readonly len: 0 | 1 | 2 | 4 | 8;
  readonly pio: boolean;
  /** Only writes of this value signal (KVM_IOEVENTFD_FLAG_DATAMATCH); others exit as usual. */
  readonly datamatch?: bigint;
  /** The eventfd. */
  readonly fd: number;
}

export class KvmEventfds {
  constructor(private readonly host: HostKernel, private readonly vmFd: number, private readonly irqchip: boolean) {}

  /**
   * Register an ioeventfd. Returns the function that unregisters it (once; later calls do nothing).
   * @throws KvmError naming the address (cause HostError: EEXIST for one already registered there).
   */
  addIoeventfd(spec: IoeventfdSpec): () => void {
    if (![0, 1, 2, 4, 8].includes(spec.len) || (spec.pio && spec.len === 0)) throw new ArgumentError(`ioeventfd: len ${spec.len}`, 'len');
    const where = `${spec.pio ? 'port' : 'MMIO'} 0x${spec.addr.toString(16)}`;
    const flags = (spec.pio ? KVM_IOEVENTFD_FLAG_PIO : 0) | (spec.datamatch !== undefined ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0);
    const set = (extra: number, step: string) => KvmError.wrap(step, () => this.host.ioctl(this.vmFd, KVM_IOEVENTFD, kvm_ioeventfd.encode({
      datamatch: spec.datamatch ?? 0n, addr: spec.addr, len: spec.len, fd: spec.fd, flags: flags | extra,
    })));
    set(0, `register an ioeventfd at ${where}`);
    let registered = true;
    return () => {
      if (!registered) return;
      set(KVM_IOEVENTFD_FLAG_DEASSIGN, `unregister the ioeventfd at ${where}`);
      registered = false;
    };
  }

  /**
   * Let eventfd `fd` raise `gsi` of the in-kernel irqchip. Returns the function that undoes it.
   * @throws KvmError when the VM has no in-kernel irqchip, or KVM refuses (cause HostError).
   */
  addIrqfd(fd: number, gsi: number): () => void {
    if (!this.irqchip) throw new KvmError(`route an irqfd to GSI ${gsi}`, 'the VM has no in-kernel irqchip (irqchip=off, or the host has none)');
    const set = (flags: number, step: string) => KvmError.wrap(step, () => this.host.ioctl(this.vmFd, KVM_IRQFD, kvm_irqfd.encode({ fd, gsi, flags })));
    set(0, `route an irqfd to GSI ${gsi}`);
    let routed = true;
    return () => {
      if (!routed) return;
      set(KVM_IRQFD_FLAG_DEASSIGN, `unroute the irqfd of GSI ${gsi}`);
      routed = false;
    };
  }
}
