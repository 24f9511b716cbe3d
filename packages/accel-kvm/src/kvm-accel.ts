// The KVM accelerator of a VM: the KVM VM over the VM's system memory, its vCPUs, and their
// state for migration. It follows the VM's run state (vCPUs run only while the VM does), stops
// the VM when a vCPU stops on its own, and is the VM's RAM dirty-log provider.

import { FirstFailure, InvariantError, PCI_SLOTS, type AddressSpace, type HostKernel, type MsiRouter, type PciBus, type PciFunction, type VmmDevice, type VmmEventBus } from '@vmmkit/core';
import {
  KVM_CAP_DEBUGREGS, KVM_CAP_GET_TSC_KHZ, KVM_CAP_TSC_CONTROL, KVM_CAP_VCPU_EVENTS, KVM_CAP_XCRS, KVM_CAP_XSAVE,
  KVM_CAP_XSAVE2,
} from '@vmmkit/core/uapi';
import type { KvmError, VcpuStoppedError } from './kvm-errors.js';
import { KvmVm, type KvmVmOptions } from './kvm-vm.js';
import { BarMappings } from './pci/bar-mappings.js';
import { PciHostBridge } from './pci/pci-host-bridge.js';
import { decodeKvmState, encodeKvmState } from './state/kvm-state-format.js';
import { VcpuState, type VcpuStateCaps } from './state/vcpu-state.js';
import { VmState } from './state/vm-state.js';
import { IoBus } from './vcpu/io-handler.js';
import { KvmVcpu } from './vcpu/kvm-vcpu.js';
import { setCpuid } from './vcpu/vcpu-registers.js';
import { vcpuCpuid } from './vcpu/vcpu-cpuid.js';

/** How to create the accelerator. */
export interface KvmAccelOptions extends KvmVmOptions {
  /** vCPUs to create. Default 1. */
  readonly vcpus?: number;
}

/** What the accelerator needs of its VM. */
export interface KvmAccelContext {
  readonly host: HostKernel;
  readonly addressSpace: AddressSpace;
  /** The VM's PCI bus, which the accelerator's PCI host bridge lets the guest reach (none: no bridge). */
  readonly pciBus?: PciBus;
  readonly events: VmmEventBus;
  /** Whether the VM runs now (its vCPUs start running if so). */
  readonly running: boolean;
  /** Stop the VM: a vCPU stopped on its own (QEMU's vm_stop on an internal error). */
  pause(reason: string): void;
  /** Told when the accelerator has been unrealized. */
  released?(): void;
}

export class KvmAccel implements VmmDevice {
  readonly driver = 'kvm';
  readonly name = 'kvm';
  /** Port I/O and MMIO of the guest: devices claim their ranges here. */
  readonly io = new IoBus();
  /** Config mechanism #1 and the guest's BARs, where the VM has a PCI bus. */
  readonly pciHost: PciHostBridge | undefined;
  /** The BAR memory (memslots) and ioeventfds KVM serves for the guest, and what failed there. */
  readonly barMappings: BarMappings;
  /** Why vCPUs stopped on their own, in order. */
  readonly stopped: VcpuStoppedError[] = [];
  /** MSIs of the VM's PCI functions that KVM refused, in order. */
  readonly msiErrors: KvmError[] = [];
  /** The PCI functions whose MSIs go to the in-kernel APICs, and what stops that. */
  readonly #msiSources = new Map<PciFunction, () => void>();
  readonly #vcpus: KvmVcpu[] = [];
  readonly #states: VcpuState[] = [];
  /** The VM's clock, irqchip and PIT for migration. */
  readonly #vmState: VmState;
  #unfollow: () => void = () => {};
  #closed = false;

  private constructor(readonly id: string, readonly vm: KvmVm, private readonly context: KvmAccelContext) {
    this.barMappings = new BarMappings(vm.memslots, vm.eventfds, context.host.pageSize);
    this.pciHost = context.pciBus && new PciHostBridge(context.pciBus, this.io, this.barMappings);
    this.#vmState = new VmState(context.host, vm);
  }

  /**
   * Create the KVM VM over the VM's system memory and its vCPUs (each given the CPUID KVM
   * supports, and parked until the VM runs).
   * @throws KvmError naming the step; everything made is released.
   */
  static async create(id: string, context: KvmAccelContext, options: KvmAccelOptions = {}): Promise<KvmAccel> {
    const host = context.host;
    let accel: KvmAccel | undefined;
    const vm = KvmVm.create(host, options, () => accel?.quiesced() ?? Promise.resolve());
    accel = new KvmAccel(id, vm, context);
    try {
      await vm.attach(context.addressSpace);
      const system = vm.system;
      const caps = stateCaps(system.extension.bind(system), vm.irqchip);
      const msrs = system.msrIndices();
      const cpuid = system.supportedCpuid();
      const mmapSize = system.vcpuMmapSize();
      for (let i = 0; i < (options.vcpus ?? 1); i++) {
        const vcpu = KvmVcpu.create(host, vm.fd, i, mmapSize, accel.io, (e) => accel!.#onStopped(e));
        accel.#vcpus.push(vcpu);
        const own = vcpuCpuid(cpuid, i);
        setCpuid(host, vcpu.fd, own);
        accel.#states.push(new VcpuState(host, i, vcpu.fd, caps, msrs, own));
      }
      for (const v of accel.#vcpus) v.start();
      accel.#follow();
      return accel;
    } catch (e) {
      await accel.unrealize().catch(() => undefined);
      throw e;
    }
  }

  get vcpus(): readonly KvmVcpu[] {
    return this.#vcpus;
  }

  /** Resolves when no vCPU runs guest code, if the VM is paused (at once if it runs). */
  quiesced(): Promise<void> {
    if (this.context.running) return Promise.resolve();
    return Promise.all(this.#vcpus.map((v) => v.whenStill())).then(() => undefined);
  }

  /** Pause every vCPU; resolves once all are out of the guest. */
  async pauseVcpus(): Promise<void> {
    await Promise.all(this.#vcpus.map((v) => v.pause()));
  }

  resumeVcpus(): void {
    for (const v of this.#vcpus) v.resume();
  }

  /**
   * The VM's clock, irqchip and PIT and every vCPU's state, versioned (kvm-state-format). The
   * VM must be paused and its vCPUs out of the guest (the migration's last dirty sync waited
   * for that).
   * @throws InvariantError when a vCPU still runs; KvmError naming the ioctl that failed.
   */
  saveState(): Uint8Array {
    const running = this.#vcpus.find((v) => v.state === 'running');
    if (running) throw new InvariantError(`kvm: vCPU ${running.index} still runs; its state cannot be saved`);
    return encodeKvmState({ vm: this.#vmState.save(), vcpus: this.#states.map((s) => s.save()) });
  }

  /**
   * Restore what `saveState` gave on the source, before the VM runs. Everything is checked
   * before anything is set (KvmStateError): the record itself, then that it fits this VM (the
   * irqchip and PIT in the kernel as on the source, each vCPU's CPUID this host's exactly, its
   * sections at this host's sizes, its TSC rate this host's or one KVM can scale to). Then the
   * TSC rates, the clock, the PICs and IOAPIC, the PIT and each vCPU are set.
   */
  loadState(bytes: Uint8Array): void {
    const state = decodeKvmState(bytes, this.#vcpus.length);
    this.#vmState.check(state.vm);
    const plans = state.vcpus.map((v, i) => this.#states[i]!.check(v));
    this.#vmState.load(state.vm);
    state.vcpus.forEach((v, i) => this.#states[i]!.load(v, plans[i]!));
  }

  /** Stop and close every vCPU, then the VM. Carries on through failures; throws the first. */
  async unrealize(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unfollow();
    const failures = new FirstFailure();
    failures.run(() => this.pciHost?.detach());
    for (const v of [...this.#vcpus].reverse()) await failures.runAsync(() => v.close());
    this.#vcpus.length = 0;
    await failures.runAsync(() => this.vm.close());
    this.context.released?.();
    failures.rethrow();
  }

  #follow(): void {
    const onRunState = (e: { running: boolean }): void => {
      if (e.running) {
        // Config space may have changed while the VM stood (a migration restored it): the BARs
        // are read again at the first access that needs them.
        this.pciHost?.invalidate();
        this.resumeVcpus();
      } else void this.pauseVcpus();
    };
    const onDevices = (): void => {
      this.pciHost?.invalidate();
      this.#routeMsis();
    };
    this.#routeMsis();
    const events = this.context.events;
    events.on('vm:run-state', onRunState);
    events.on('device:realized', onDevices);
    events.on('device:unrealized', onDevices);
    this.#unfollow = () => {
      events.off('vm:run-state', onRunState);
      events.off('device:realized', onDevices);
      events.off('device:unrealized', onDevices);
      for (const stop of this.#msiSources.values()) stop();
      this.#msiSources.clear();
    };
    if (this.context.running) this.resumeVcpus();
  }

  /**
   * The router offered to the VM's PCI functions (`useMsiRouter`): the VM's, where it has one
   * and the host's eventfds are the kernel's (`HostKernel.kernelEventfds`; a simulated host's
   * eventfd numbers must never reach KVM_IRQFD). Undefined otherwise.
   */
  get msiRouter(): MsiRouter | undefined {
    return this.context.host.kernelEventfds ? this.vm.msiRouter : undefined;
  }

  /**
   * With an in-kernel irqchip, the MSIs of the functions on the VM's PCI bus go to the guest's
   * local APICs: listen to the functions plugged (KVM_SIGNAL_MSI for what the VMM hears), offer
   * them the MSI router where there is one (irqfds, the VMM out of the loop), and stop both for
   * those unplugged.
   */
  #routeMsis(): void {
    const bus = this.context.pciBus;
    if (!bus || !this.vm.irqchip) return;
    const present = new Set<PciFunction>();
    for (let slot = 1; slot < PCI_SLOTS; slot++) {
      const fn = bus.function(slot);
      if (fn?.onMessageInterrupt) present.add(fn);
    }
    for (const [fn, stop] of this.#msiSources) if (!present.has(fn)) (stop(), this.#msiSources.delete(fn));
    const router = this.msiRouter;
    for (const fn of present) {
      if (this.#msiSources.has(fn)) continue;
      const unlisten = fn.onMessageInterrupt!((m) => {
        try {
          this.vm.signalMsi(m.address, m.data);
        } catch (e) {
          this.msiErrors.push(e as KvmError);
        }
      });
      const offered = router !== undefined && fn.useMsiRouter !== undefined;
      if (offered) fn.useMsiRouter!(router);
      this.#msiSources.set(fn, () => {
        // Withdrawn first: its vectors go back to the eventfds the VMM reads, heard just below.
        if (offered) fn.useMsiRouter!(undefined);
        unlisten();
      });
    }
  }

  #onStopped(e: VcpuStoppedError): void {
    this.stopped.push(e);
    this.context.pause(`vCPU ${e.vcpu} stopped: ${e.reason}`);
  }
}

/** What this host lets vCPU state hold. */
function stateCaps(extension: (cap: number) => number, irqchip: boolean): VcpuStateCaps {
  const xsave2 = extension(KVM_CAP_XSAVE2);
  const xsave = extension(KVM_CAP_XSAVE) !== 0;
  return {
    xsaveSize: xsave2 > 0 ? Math.max(xsave2, 4096) : xsave ? 4096 : 0,
    xsave2: xsave2 > 0,
    xcrs: extension(KVM_CAP_XCRS) !== 0,
    events: extension(KVM_CAP_VCPU_EVENTS) !== 0,
    debugregs: extension(KVM_CAP_DEBUGREGS) !== 0,
    lapic: irqchip,
    tsc: { read: extension(KVM_CAP_GET_TSC_KHZ) !== 0, scale: extension(KVM_CAP_TSC_CONTROL) !== 0 },
  };
}

