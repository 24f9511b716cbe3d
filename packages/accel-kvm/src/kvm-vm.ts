// A KVM VM: the VM fd with manual-protect dirty logging and (where the host has them) an
// in-kernel irqchip and PIT, its memslots following an address space, and its dirty log. It
// owns the /dev/kvm fd and the VM fd; the vCPUs are created on it and closed before it.

import { FirstFailure, type AddressSpace, type HostKernel } from '@vmmkit/core';
import {
  KVM_CAP_IMMEDIATE_EXIT, KVM_CAP_IRQCHIP, KVM_CAP_IRQ_ROUTING, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_CAP_PIT2, KVM_CAP_PIT_STATE2,
  KVM_CAP_SET_TSS_ADDR, KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2, KVM_PIT_SPEAKER_DUMMY, kvm_pit_config,
  KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, KVM_ENABLE_CAP, KVM_GET_CLOCK, KVM_SET_CLOCK,
  KVM_SET_IDENTITY_MAP_ADDR, KVM_SET_TSS_ADDR, KVM_SIGNAL_MSI, kvm_clock_data, kvm_enable_cap, kvm_msi,
} from '@vmmkit/core/uapi';
import { KvmDirtyLog } from './kvm-dirty-log.js';
import { KvmError } from './kvm-errors.js';
import { KvmEventfds } from './kvm-eventfds.js';
import { KvmIrqRoutes } from './kvm-irq-routes.js';
import { KvmMemslots } from './kvm-memslots.js';
import { KvmMsiRouter } from './kvm-msi-router.js';
import { KvmSystem } from './kvm-system.js';

/** How to create a KVM VM. */
export interface KvmVmOptions {
  /**
   * An in-kernel irqchip (PIC, IOAPIC, local APICs): `auto` (default) where the host has
   * KVM_CAP_IRQCHIP, `on` to require it, `off` for none (HLT then exits to the VMM).
   */
  readonly irqchip?: 'on' | 'off' | 'auto';
  /**
   * An in-kernel 8254 PIT (KVM_CREATE_PIT2), as QEMU has with a kernel irqchip: `auto` (default)
   * with the in-kernel irqchip where the host has KVM_CAP_PIT2 and KVM_CAP_PIT_STATE2 (its
   * state migrates), `on` to require it, `off` for none (ports 0x40-0x43 and 0x61 then exit to
   * the VMM, where a device of its own may answer). It raises IRQ 0 on the in-kernel PIC and
   * IOAPIC, so it needs the irqchip. KVM also answers port 0x61 (KVM_PIT_SPEAKER_DUMMY): vmmkit
   * has no speaker of its own, and guests read channel 2's output there to calibrate their TSC.
   */
  readonly pit?: 'on' | 'off' | 'auto';
}

/** Guest physical addresses KVM needs for itself on Intel (3 pages of TSS, 1 of identity map), below 4 GiB. */
const TSS_ADDR = 0xfffb_d000;
const IDENTITY_MAP_ADDR = 0xfffb_c000;

export class KvmVm {
  readonly memslots: KvmMemslots;
  readonly dirtyLog: KvmDirtyLog;
  /** ioeventfds and irqfds of the VM. */
  readonly eventfds: KvmEventfds;
  /**
   * MSIs from eventfds through GSI routes and irqfds, where the VM has an in-kernel irqchip with
   * GSI routing (KVM_CAP_IRQ_ROUTING). The eventfds given to it must be the kernel's.
   */
  readonly msiRouter: KvmMsiRouter | undefined;
  #addressSpace: AddressSpace | undefined;
  #closed = false;

  private constructor(
    readonly host: HostKernel,
    readonly system: KvmSystem,
    readonly fd: number,
    /** Whether the VM has an in-kernel irqchip (and so in-kernel local APICs). */
    readonly irqchip: boolean,
    /** Whether the VM has an in-kernel PIT. */
    readonly pit: boolean,
    quiesced: () => Promise<void>,
    /** How many GSI routes the VM's table may hold (0: no GSI routing). */
    maxRoutes: number,
  ) {
    this.memslots = new KvmMemslots(host, fd);
    this.dirtyLog = new KvmDirtyLog(host, fd, this.memslots, quiesced);
    this.eventfds = new KvmEventfds(host, fd, irqchip);
    this.msiRouter = irqchip && maxRoutes > 0 ? new KvmMsiRouter(new KvmIrqRoutes(host, fd, maxRoutes), this.eventfds) : undefined;
  }

  /**
   * Open /dev/kvm, create the VM, enable manual-protect dirty logging and the irqchip.
   * `quiesced` resolves when the VM's vCPUs are stopped (if the VM is paused): the dirty log's
   * sync waits for it.
   * @throws KvmError naming the step; everything opened is closed again.
   */
  static create(host: HostKernel, options: KvmVmOptions = {}, quiesced: () => Promise<void> = async () => {}): KvmVm {
    const system = KvmSystem.open(host);
    let fd = -1;
    try {
      if (!system.extension(KVM_CAP_IMMEDIATE_EXIT)) throw new KvmError('check extensions', 'KVM_CAP_IMMEDIATE_EXIT is missing (a running vCPU could not be stopped)');
      const protect = system.extension(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
      const wanted = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
      if ((protect & wanted) !== wanted) throw new KvmError('check extensions', `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is ${protect}, vmmkit needs ${wanted}`);
      const hasIrqchip = system.extension(KVM_CAP_IRQCHIP) !== 0;
      const irqchip = options.irqchip === 'on' || ((options.irqchip ?? 'auto') === 'auto' && hasIrqchip);
      if (irqchip && !hasIrqchip) throw new KvmError('create the irqchip', 'irqchip=on but the host has no KVM_CAP_IRQCHIP');
      const pitMode = options.pit ?? 'auto';
      if (pitMode === 'on' && !irqchip) throw new KvmError('create the PIT', 'pit=on needs the in-kernel irqchip it raises IRQ 0 on (irqchip is off)');
      const hasPit = irqchip && pitMode !== 'off' && system.extension(KVM_CAP_PIT2) !== 0 && system.extension(KVM_CAP_PIT_STATE2) !== 0;
      if (pitMode === 'on' && !hasPit) throw new KvmError('create the PIT', 'pit=on but the host lacks KVM_CAP_PIT2 or KVM_CAP_PIT_STATE2');
      const tss = system.extension(KVM_CAP_SET_TSS_ADDR) !== 0;
      const maxRoutes = irqchip ? system.extension(KVM_CAP_IRQ_ROUTING) : 0;
      fd = system.createVm();
      const vmFd = fd;
      KvmError.wrap('enable KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2', () =>
        host.ioctl(vmFd, KVM_ENABLE_CAP, kvm_enable_cap.encode({ cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, args: [BigInt(wanted)] })));
      if (tss) {
        KvmError.wrap('set the TSS address', () => host.ioctl(vmFd, KVM_SET_TSS_ADDR, TSS_ADDR));
        const addr = new Uint8Array(8);
        new DataView(addr.buffer).setBigUint64(0, BigInt(IDENTITY_MAP_ADDR), true);
        KvmError.wrap('set the identity map address', () => host.ioctl(vmFd, KVM_SET_IDENTITY_MAP_ADDR, addr));
      }
      if (irqchip) KvmError.wrap('create the irqchip', () => host.ioctl(vmFd, KVM_CREATE_IRQCHIP));
      if (hasPit) {
        const config = kvm_pit_config.encode({ flags: KVM_PIT_SPEAKER_DUMMY });
        KvmError.wrap('create the PIT', () => host.ioctl(vmFd, KVM_CREATE_PIT2, config));
      }
      return new KvmVm(host, system, vmFd, irqchip, hasPit, quiesced, maxRoutes);
    } catch (e) {
      const failures = new FirstFailure();
      if (fd >= 0) failures.run(() => host.close(fd));
      failures.run(() => system.close());
      throw e;
    }
  }

  /**
   * Follow `addressSpace`'s RAM sections as memslots (replaying those it has).
   * @throws KvmError naming the section that could not be mapped; no slot stays.
   */
  async attach(addressSpace: AddressSpace): Promise<void> {
    await addressSpace.addListener(this.memslots);
    this.#addressSpace = addressSpace;
  }

  /** The VM clock (KVM_GET_CLOCK), for migration. */
  getClock(): Uint8Array {
    const buf = kvm_clock_data.encode();
    KvmError.wrap('read the VM clock', () => this.host.ioctl(this.fd, KVM_GET_CLOCK, buf));
    return buf;
  }

  /** Set the VM clock (KVM_SET_CLOCK) from what `getClock` returned on the source. */
  setClock(clock: Uint8Array): void {
    // Only `clock` (and the TSC-stable flag it came with) is set; realtime would need KVM_CLOCK_REALTIME.
    const buf = kvm_clock_data.encode({ clock: kvm_clock_data.get(clock, 'clock') });
    KvmError.wrap('set the VM clock', () => this.host.ioctl(this.fd, KVM_SET_CLOCK, buf));
  }

  /**
   * Deliver a message-signalled interrupt (KVM_SIGNAL_MSI) as a device's write of `data` to
   * `address` would: to the in-kernel local APICs. Returns false when the APIC addressed
   * ignored it (KVM answers 0).
   * @throws KvmError without an in-kernel irqchip, or when KVM refuses the message (EPERM: no
   *   local APIC at its destination).
   */
  signalMsi(address: bigint, data: number): boolean {
    if (!this.irqchip) throw new KvmError('signal an MSI', 'the VM has no in-kernel irqchip (irqchip=off)');
    const msi = kvm_msi.encode({ address_lo: Number(address & 0xffff_ffffn), address_hi: Number(address >> 32n), data });
    return KvmError.wrap(`signal the MSI 0x${data.toString(16)} to 0x${address.toString(16)}`, () => this.host.ioctl(this.fd, KVM_SIGNAL_MSI, msi)) > 0;
  }

  /**
   * Stop following the address space (every slot removed), close the VM and /dev/kvm. Carries
   * on through failures; throws the first. The vCPUs must be closed first.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // The VM fd's close releases every irqfd and GSI route: routes disconnected later do nothing.
    this.msiRouter?.close();
    const failures = new FirstFailure();
    const as = this.#addressSpace;
    this.#addressSpace = undefined;
    if (as) await failures.runAsync(() => as.removeListener(this.memslots));
    failures.run(() => this.host.close(this.fd));
    failures.run(() => this.system.close());
    failures.rethrow();
  }
}

