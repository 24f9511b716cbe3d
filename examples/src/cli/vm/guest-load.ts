// Keeping the guest busy: on the simulated host @vmmkit/sim's timed guest (vCPU stores into RAM
// and traffic on every NIC of the demo machine that the VM was given), with --kvm the pages guest
// on real vCPUs, so that migration has dirty pages.

import { isVfioVmmDevice, type Vmm } from '@vmmkit/core';
import type { VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { timedGuest } from '@vmmkit/sim';
import type { CliHost } from './cli-host.js';
import { kvmGuestRunner } from './kvm-guest.js';

/** What runs the guest. */
interface GuestRunner {
  start(): void | Promise<void>;
  resume(): void;
  stop(): void;
}

/** The guest at work on the simulated host. */
export class GuestLoad {
  readonly #guest: GuestRunner;

  /** The load for `vmm`, or undefined on a real host without --kvm (where a real guest would do the work). */
  static of(vmm: Vmm, host: CliHost): GuestLoad | undefined {
    const kvm = kvmGuestRunner(vmm);
    if (kvm) return new GuestLoad(kvm);
    if (!host.sim) return undefined;
    const { machine } = host.sim;
    const isNic = (bdf: string): boolean => machine.devices?.some((d) => d.bdf === bdf && d.model === 'nic') ?? false;
    const nics = vmm.devices.filter((d) => d.driver === 'vfio-pci' && isVfioVmmDevice(d) && isNic(d.vfio.name));
    return new GuestLoad(timedGuest(vmm, host.sim.host, nics as VfioPciDevice[]));
  }

  private constructor(guest: GuestRunner) {
    this.#guest = guest;
  }

  /** A freshly booted guest: its drivers set the NICs up, then it works. */
  async start(): Promise<void> {
    await this.#guest.start();
  }

  /**
   * A migrated guest: its drivers' setup arrived with the device state, so it only goes on
   * working (start() would program the NICs again).
   */
  resume(): void {
    this.#guest.resume();
  }

  stop(): void {
    this.#guest.stop();
  }
}
