// A SimHost harness for the VfioIommuBackend contract suite of @vmmkit/core/testing: a machine
// with edu devices, guest memory, DMA through the test hook, the census and fault injection.
// Any backend (vmmkit's or a user's) can run the contract on it.

import { ArgumentError, setBusMasterThrough, VfioDevice, VfioKernelDeviceIo, type VfioIommuBackend, type VmmEventBus } from '@vmmkit/core';
import { contractMemory, type ContractIoctl, type VfioIommuContractHarness } from '@vmmkit/core/testing';
import type { SimHostConfig } from '../config.js';
import { SimDmaFault } from '../iommu/dma-target.js';
import { SimHost } from '../sim-host.js';
import { TWO_EDU_MACHINE } from '../guest/sim-machines.js';

/** How to build the harness for one backend. */
export interface SimContractOptions {
  /** The machine. Default: two edu devices, each in its own group, behind one dirty-tracking IOMMU. */
  readonly machine?: SimHostConfig;
  /** The backend under test, made fresh for each test. */
  backend(host: SimHost, events: VmmEventBus): VfioIommuBackend;
  /** Adjust each new device before it is attached (give it its iommufd object, say). */
  prepareDevice?(device: VfioDevice): void;
  /** Release what the backend factory made. */
  cleanup?(): void | Promise<void>;
  /** The ioctls an attach makes, for the failure sweep. */
  readonly attachIoctls?: readonly ContractIoctl[];
  /** The ioctls of detach, map, unmap, dirty query and dirty tracking, for their failure cases. */
  readonly detachIoctls?: readonly ContractIoctl[];
  readonly mapIoctl?: ContractIoctl;
  readonly unmapIoctl?: ContractIoctl;
  readonly queryDirtyIoctl?: ContractIoctl;
  readonly dirtyTrackingIoctl?: ContractIoctl;
}

/** Build a fresh contract harness on a new SimHost. */
export async function simContractHarness(options: SimContractOptions): Promise<VfioIommuContractHarness> {
  const host = new SimHost(options.machine ?? TWO_EDU_MACHINE);
  const { memory, space, events, release } = await contractMemory(host);
  const devices = [...host.kernel.devices.values()].filter((d) => d.vfioBound);
  return {
    host,
    backend: options.backend(host, events),
    memory,
    space,
    events,
    deviceCount: devices.length,
    device(index) {
      const d = devices[index];
      if (!d) throw new ArgumentError(`the machine has ${devices.length} vfio devices, not ${index + 1}`);
      const device = new VfioDevice({ sysfsdev: `/sys/bus/${d.mdev ? 'mdev' : 'pci'}/devices/${d.name}` }, undefined, (v) => new VfioKernelDeviceIo(host, v));
      options.prepareDevice?.(device);
      return device;
    },
    async dma(device, iova, data) {
      // vfio-pci clears Bus Master Enable when the device is opened, as Linux does.
      await setBusMasterThrough(device.io, true);
      try {
        host.deviceDma(device.name, iova, data);
      } catch (e) {
        // A real device's faulting DMA just does not land; the contract looks at memory.
        if (!(e instanceof SimDmaFault)) throw e;
      }
    },
    census: () => host.census(),
    injectFault: (fault) => host.injectFault(fault),
    attachIoctls: options.attachIoctls,
    detachIoctls: options.detachIoctls,
    mapIoctl: options.mapIoctl,
    unmapIoctl: options.unmapIoctl,
    queryDirtyIoctl: options.queryDirtyIoctl,
    dirtyTrackingIoctl: options.dirtyTrackingIoctl,
    async dispose() {
      await options.cleanup?.();
      await release();
    },
  };
}
