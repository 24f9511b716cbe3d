// What a backend gives the VFIO IOMMU contract suite: a host, the backend under test, guest
// memory laid out in an address space, devices to attach, and a way to make them DMA.

import type { FdKind } from '../uapi/ioctl.js';
import type { HostKernel } from '../host/host-kernel.js';
import { VmmEventBus } from '../events/vmm-events.js';
import { AddressSpace } from '../memory/address-space.js';
import { GuestMemory, type GuestMemoryOptions, type RamSpec } from '../memory/guest-memory.js';
import { VfioAddressSpace } from '../vfio/vfio-address-space.js';
import type { VfioDevice } from '../vfio/vfio-device.js';
import type { VfioIommuBackend } from '../vfio/vfio-iommu-backend.js';

/** Behaviour that differs between backends (and hosts), declared rather than guessed from names. */
export interface VfioIommuContractCapabilities {
  /**
   * Unmapping part of a mapping: `'EINVAL'` (type1v2 refuses it) or `'ignored'` (iommufd, and a
   * vfio-user server, say ENOENT, which the backend reads as "nothing to unmap", as QEMU does).
   * Never a split.
   */
  readonly partialUnmap: 'EINVAL' | 'ignored';
  /** The container can track dirty pages through the IOMMU for the test devices. */
  readonly iommuDirtyTracking: boolean;
  /** IOMMU dirty reports hold exactly the pages written, or every mapped page (type1 with vfio-pci). */
  readonly dirtyReports: 'exact' | 'all-mapped';
  /** A query with `noClear` leaves the bits for the next query (iommufd); type1 always clears. */
  readonly noClear: boolean;
  /** The host IOMMU's hardware capabilities can be read (IOMMU_GET_HW_INFO). */
  readonly hwCaps: boolean;
  /** Devices in different groups share one container. */
  readonly sharedContainer: boolean;
  /** The harness offers at least two host devices. */
  readonly multipleDevices: boolean;
  /** The harness can inject faults and count kernel objects (`injectFault`, `census`, `attachIoctls`). */
  readonly faultInjection: boolean;
  /**
   * An attached device has a kernel fd (`device.fd`), -1 again after detach. Default true; a
   * vfio-user device has none: its I/O is messages on its connection.
   */
  readonly deviceFd?: boolean;
  /**
   * dmaMap takes any memory of the process (the kernel pins what the address names). Default
   * true; vfio-user maps only guest RAM (it hands the server the RAM block's file and offset)
   * and refuses other memory with EFAULT, so the suite's extra mappings use a spare part of
   * guest RAM there.
   */
  readonly processMemory?: boolean;
}

/** One ioctl an operation makes, to fail on purpose. */
export interface ContractIoctl {
  readonly name: string;
  readonly ioctl: number;
  /** The kind of fd it is made on, where VFIO reuses the number. */
  readonly on?: FdKind;
}

/** A fresh setup for one contract test. */
export interface VfioIommuContractHarness {
  readonly host: HostKernel;
  /** The backend under test, new for this test. */
  readonly backend: VfioIommuBackend;
  /** Guest memory (at least 2 MiB at GPA 0), laid out in `space.as`. */
  readonly memory: GuestMemory;
  readonly space: VfioAddressSpace;
  readonly events: VmmEventBus;
  /** How many distinct host devices `device()` can hand out (at least 1). */
  readonly deviceCount: number;
  /** A new, unattached VfioDevice for host device number `index`. */
  device(index: number): VfioDevice;
  /**
   * Make an attached device write `data` at `iova` by DMA. Real devices report no IOMMU faults,
   * so this resolves whether or not the write got through: tests look at memory.
   */
  dma(device: VfioDevice, iova: bigint, data: Uint8Array): Promise<void>;
  /** Live fds and kernel objects, to prove nothing leaked; undefined where the host cannot count. */
  census?(): unknown;
  /** Fail the nth next call of an ioctl with an errno (hosts with fault injection). */
  injectFault?(fault: { ioctl: number; errno: string; nth?: number; on?: FdKind }): void;
  /** The ioctls attaching a device makes, for the failure sweep. */
  readonly attachIoctls?: readonly ContractIoctl[];
  /** The ioctls detaching the last device makes (freeing its container), for the failure sweep. */
  readonly detachIoctls?: readonly ContractIoctl[];
  /** The ioctls of dmaMap, dmaUnmap and queryDirtyBitmap, for their failure cases. */
  readonly mapIoctl?: ContractIoctl;
  readonly unmapIoctl?: ContractIoctl;
  readonly queryDirtyIoctl?: ContractIoctl;
  /** The ioctl that starts and stops IOMMU dirty tracking, for its failure case. */
  readonly dirtyTrackingIoctl?: ContractIoctl;
  /** Release what the harness made (guest memory included). */
  dispose(): Promise<void>;
}

/**
 * Guest memory, its address space and the VFIO view of it, for building a harness:
 * `memory` is allocated on `host` and laid out in system memory.
 */
export async function contractMemory(
  host: HostKernel,
  specs: readonly RamSpec[] = [{ gpa: 0n, size: 4n << 20n }],
  options: GuestMemoryOptions = {},
): Promise<{ memory: GuestMemory; space: VfioAddressSpace; events: VmmEventBus; release(): Promise<void> }> {
  const memory = GuestMemory.allocate(host, specs, options);
  const as = new AddressSpace('contract system memory');
  for (const block of memory.blocks) {
    await as.addSection({ kind: 'ram', start: block.gpa, size: block.size, block, offset: 0n, readonly: false });
  }
  return {
    memory,
    space: new VfioAddressSpace(as, memory),
    events: new VmmEventBus(),
    async release() {
      for (const s of [...as.sections].reverse()) await as.removeSection(s);
      memory.free();
    },
  };
}
