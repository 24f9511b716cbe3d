// A contract harness for any host with real VFIO devices (LinuxHost, or SimHost as a cross-check):
// the devices are QEMU edu devices bound to vfio-pci, made to DMA through their own engine.

import { ArgumentError } from '../errors/vmm-error.js';
import type { HostKernel } from '../host/host-kernel.js';
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../host/posix.js';
import type { VmmEventBus } from '../events/vmm-events.js';
import type { VfioContainerBase } from '../vfio/vfio-container-base.js';
import { VfioKernelDeviceIo } from '../vfio/kernel-device-io.js';
import { VfioDevice } from '../vfio/vfio-device.js';
import type { VfioIommuBackend } from '../vfio/vfio-iommu-backend.js';
import { contractMemory, type VfioIommuContractHarness } from './contract-harness.js';
import { eduDmaWrite } from './edu-dma.js';

/** Where the staging page sits in every container: below edu's 28-bit DMA mask, clear of the tests' IOVAs. */
export const EDU_STAGING_IOVA = 0x0f00_0000n;

export interface HostContractOptions {
  readonly host: HostKernel;
  /** sysfs paths of edu devices bound to vfio (`/sys/bus/pci/devices/0000:00:03.0`). */
  readonly devices: readonly string[];
  /** The backend under test. */
  backend(host: HostKernel, events: VmmEventBus): VfioIommuBackend;
  /** Adjust each new device before attach (give it its iommufd object, say). */
  prepareDevice?(device: VfioDevice): void;
  cleanup?(): void | Promise<void>;
}

/** Build a harness whose devices DMA through edu's own engine, as a guest driver would make them. */
export async function hostContractHarness(options: HostContractOptions): Promise<VfioIommuContractHarness> {
  const { host } = options;
  const { memory, space, events, release } = await contractMemory(host);
  const staging = host.mmap(4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
  const staged = new WeakSet<VfioContainerBase>();
  return {
    host,
    backend: options.backend(host, events),
    memory,
    space,
    events,
    deviceCount: options.devices.length,
    device(index) {
      const sysfsdev = options.devices[index];
      if (!sysfsdev) throw new ArgumentError(`the harness has ${options.devices.length} devices, not ${index + 1}`);
      const device = new VfioDevice({ sysfsdev }, undefined, (d) => new VfioKernelDeviceIo(host, d));
      options.prepareDevice?.(device);
      return device;
    },
    async dma(device, iova, data) {
      const container = device.container!;
      if (!staged.has(container)) {
        // The edu copies from here into its buffer: map it (read-only) once per container.
        await container.dmaMap(EDU_STAGING_IOVA, 4096n, staging.addr, true);
        staged.add(container);
      }
      await eduDmaWrite(device.io, device.name, iova, data, { iova: EDU_STAGING_IOVA, bytes: staging.bytes });
    },
    async dispose() {
      await options.cleanup?.();
      staging.unmap();
      await release();
    },
  };
}
