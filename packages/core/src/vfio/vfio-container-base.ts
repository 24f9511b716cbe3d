// The shared state and logic of a VFIO container (QEMU's VFIOContainerBase, its memory listener
// and vfio_device_prepare/unprepare): the base owns the container's membership (its devices, its
// place in the address space, its listener, its events) and its dirty-tracking state machine;
// a backend's subclass implements only the kernel hooks.

import type { HostKernel } from '../host/host-kernel.js';
import { VfioError } from '../errors/vmm-error.js';
import { FirstFailure } from '../errors/first-failure.js';
import type { VmmEventBus } from '../events/vmm-events.js';
import type { MemoryListener, MemorySection } from '../memory/address-space.js';
import type { DirtyBitmap } from '../memory/dirty-bitmap.js';
import type { IommuMapping, IommuNotifier } from '../memory/iommu-memory-region.js';
import { pageRange } from '../memory/page-range.js';
import { FULL_IOVA_RANGE, type IovaRange } from './iova-range.js';
import type { VfioAddressSpace } from './vfio-address-space.js';
import type { VfioDevice } from './vfio-device.js';
import type { VfioIommuBackend } from './vfio-iommu-backend.js';
import { setContainerOf } from './vfio-membership.js';
import { iommuTracksAll } from './dirty/dirty-tracking-strategy.js';
import { VfioDirtyTracking, type DirtyHarvest, type IommuDirtyHooks } from './dirty/vfio-dirty-tracking.js';

const IOVA_SPACE = 1n << 64n;

/** What every container is made with: the one set of constructor arguments of every backend's subclass. */
export interface VfioContainerContext {
  /** A name for messages and events, e.g. `legacy-container-1`. */
  readonly id: string;
  /** The backend that made the container. */
  readonly backend: VfioIommuBackend;
  /** The address space whose memory the container maps. */
  readonly space: VfioAddressSpace;
  readonly host: HostKernel;
  readonly events: VmmEventBus;
}

/** What a backend reads from the kernel when a container opens (QEMU's ops->setup). */
export interface VfioContainerInfo {
  /** The IOVA ranges the container can map. Default: the whole 64-bit space. */
  readonly iovaRanges?: readonly IovaRange[];
  /** Supported IOMMU page sizes (bitmap of sizes). Default: the guest memory's page size. */
  readonly pgsizes?: bigint;
  /** How many DMA mappings the kernel allows (type1's DMA_AVAIL); 0 = unknown. */
  readonly dmaMaxMappings?: number;
  /** The largest dirty bitmap the kernel accepts in one call (type1's migration capability); 0 = no limit. */
  readonly maxDirtyBitmapSize?: bigint;
  /** Page sizes the IOMMU reports dirty pages at; 0 where it cannot. */
  readonly dirtyPgsizes?: bigint;
}

export interface DmaUnmapOptions {
  /** Unmap everything the container has mapped; `iova` and `size` are ignored. */
  readonly all?: boolean;
  /**
   * Harvest the range's dirty bits into this guest memory first, when dirty tracking runs (a
   * guest IOMMU unmapping during migration): once unmapped, the IO page table forgets them.
   */
  readonly dirty?: DirtyHarvest;
}

export interface QueryDirtyOptions {
  /** Leave the dirty bits set (IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR): the range is unmapped next anyway. */
  readonly noClear?: boolean;
}

/** One VFIO container: a set of IO page tables all devices in it share. */
export abstract class VfioContainerBase implements MemoryListener {
  readonly id: string;
  readonly backend: VfioIommuBackend;
  readonly space: VfioAddressSpace;
  protected readonly host: HostKernel;
  protected readonly events: VmmEventBus;
  /** How the container's dirty pages are found during a migration: start, sync, stop, harvest. */
  readonly dirtyTracking: VfioDirtyTracking;
  readonly #devices: VfioDevice[] = [];
  #info: Required<VfioContainerInfo>;
  #state: 'new' | 'open' | 'closed' = 'new';
  #listening = false;
  readonly #guestIommuNotifiers = new Map<MemorySection, IommuNotifier>();

  protected constructor(context: VfioContainerContext) {
    this.id = context.id;
    this.backend = context.backend;
    this.space = context.space;
    this.host = context.host;
    this.events = context.events;
    this.#info = withDefaults({}, context.space.memory.pageSize);
    this.dirtyTracking = new VfioDirtyTracking(
      {
        id: this.id,
        devices: () => this.#devices,
        sections: () => this.space.as.sections,
        memory: this.space.memory,
        host: this.host,
        events: this.events,
        unmap: (iova, size) => this.doDmaUnmap(iova, size, false),
      },
      this.#iommuDirtyHooks(),
    );
  }

  /** The devices attached to the container, oldest first. */
  get devices(): readonly VfioDevice[] {
    return this.#devices;
  }

  /** The IOVA ranges the container can map. */
  get iovaRanges(): readonly IovaRange[] {
    return this.#info.iovaRanges;
  }

  /** Supported IOMMU page sizes (bitmap of sizes). */
  get pgsizes(): bigint {
    return this.#info.pgsizes;
  }

  /** How many DMA mappings the kernel allows; 0 = unknown. */
  get dmaMaxMappings(): number {
    return this.#info.dmaMaxMappings;
  }

  /** The largest dirty bitmap the kernel accepts in one call; 0 = no limit. */
  get maxDirtyBitmapSize(): bigint {
    return this.#info.maxDirtyBitmapSize;
  }

  /** Page sizes the IOMMU reports dirty pages at; 0 where it cannot. */
  get dirtyPgsizes(): bigint {
    return this.#info.dirtyPgsizes;
  }

  /**
   * The container's IOMMU tracks dirty pages for every one of its devices (the IO page table of
   * each tracks). Device DMA logging is a device's own: see `VfioDevice.dmaLoggingSupported`.
   */
  get iommuDirtyTrackingSupported(): boolean {
    return this.#iommuDirtyHooks() !== undefined && iommuTracksAll(this.#devices);
  }

  /** Whether the container maps the address space's memory (its listener is registered). */
  get listening(): boolean {
    return this.#listening;
  }

  /**
   * Bring the container up: read its capabilities from the kernel, join its address space and
   * map the space's memory, following it from now on (vfio_address_space_insert and
   * memory_listener_register). On failure what this did is undone; the backend then `close`s it.
   * @throws VfioError naming the container and what failed.
   */
  async open(): Promise<void> {
    if (this.#state !== 'new') throw new VfioError(`open ${this.id}`, undefined, { detail: `it is ${this.#state}` });
    this.#info = withDefaults(await this.doSetup?.() ?? {}, this.space.memory.pageSize);
    this.space.insert(this);
    try {
      await this.space.as.addListener(this);
    } catch (e) {
      this.space.remove(this);
      throw e;
    }
    this.#listening = true;
    this.#state = 'open';
    this.events.emit('vfio:container-created', { container: this.id, backend: this.backend.kind });
  }

  /**
   * Take the container down: stop its dirty tracking, unmap its memory, leave its address space
   * (the last container out releases the space) and release the kernel object (`doRelease`).
   * Every step runs even if one fails; the first failure is thrown. Idempotent. Devices must
   * have been removed first.
   */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    const wasOpen = this.#state === 'open';
    this.#state = 'closed';
    const failures = new FirstFailure();
    await failures.runAsync(() => this.dirtyTracking.stop());
    if (this.#listening) {
      this.#listening = false;
      await failures.runAsync(() => this.space.as.removeListener(this));
    }
    this.space.remove(this);
    await failures.runAsync(() => this.doRelease());
    if (wasOpen) this.events.emit('vfio:container-destroyed', { container: this.id, backend: this.backend.kind });
    failures.rethrow();
  }

  /**
   * Make `device` a member, once the backend attached it in the kernel (vfio_device_prepare).
   * @throws VfioError (EBUSY) while dirty tracking is on: a device joining then would go untracked.
   */
  addDevice(device: VfioDevice): void {
    if (this.#state !== 'open') throw new VfioError(`join ${this.id}`, device.name, { detail: `the container is ${this.#state}` });
    if (this.dirtyTracking.state !== 'stopped') {
      throw new VfioError(`join ${this.id}`, device.name, { errno: 'EBUSY', detail: 'dirty tracking runs in the container (is a migration running?)' });
    }
    if (this.#devices.includes(device)) return;
    this.#devices.push(device);
    setContainerOf(device, this);
    this.events.emit('vfio:device-attached', { device: device.name, container: this.id, backend: this.backend.kind });
  }

  /**
   * Take `device` out, before the backend detaches it in the kernel (vfio_device_unprepare). Dirty
   * tracking, if on, is stopped first; the device leaves even if that fails (its fd closing ends
   * its logging), and the failure is thrown after.
   */
  async removeDevice(device: VfioDevice): Promise<void> {
    const i = this.#devices.indexOf(device);
    if (i < 0) return;
    const failures = new FirstFailure();
    if (this.dirtyTracking.state !== 'stopped') await failures.runAsync(() => this.dirtyTracking.stop());
    this.dirtyTracking.forget(device);
    this.#devices.splice(i, 1);
    setContainerOf(device, undefined);
    this.events.emit('vfio:device-detached', { device: device.name, container: this.id, backend: this.backend.kind });
    failures.rethrow();
  }

  /**
   * Map [iova, iova + size) to host memory at `vaddr`.
   * @throws VfioError naming the range and the kernel's errno.
   */
  async dmaMap(iova: bigint, size: bigint, vaddr: bigint, readonly: boolean): Promise<void> {
    if (size <= 0n) throw new VfioError(`map IOVA 0x${iova.toString(16)} in ${this.id}`, undefined, { errno: 'EINVAL', detail: 'size must be positive' });
    await this.doDmaMap(iova, size, vaddr, readonly);
  }

  /**
   * Unmap [iova, iova + size), or everything with `all`. With `dirty`, while dirty tracking runs,
   * the range's dirty bits are harvested into that guest memory's dirty log (see
   * `VfioDirtyTracking.harvestUnmap`).
   */
  async dmaUnmap(iova: bigint, size: bigint, options: DmaUnmapOptions = {}): Promise<void> {
    if (options.all) return this.doDmaUnmap(0n, 0n, true);
    if (size <= 0n) throw new VfioError(`unmap IOVA 0x${iova.toString(16)} in ${this.id}`, undefined, { errno: 'EINVAL', detail: 'size must be positive' });
    if (options.dirty) return this.dirtyTracking.harvestUnmap(iova, size, options.dirty);
    await this.doDmaUnmap(iova, size, false);
  }

  /**
   * OR the IOMMU's dirty bits for [iova, iova + size) into `bitmap.incoming` (bit 0 = iova, one bit
   * per guest memory page); fold them in with `bitmap.mergeIncoming()`. Only while dirty tracking
   * runs through the IOMMU; a migration's sync does this for you.
   * @throws VfioError when the container does not track dirty pages through its IOMMU now, or the kernel refuses.
   */
  async queryDirtyBitmap(bitmap: DirtyBitmap, iova: bigint, size: bigint, options: QueryDirtyOptions = {}): Promise<void> {
    await this.dirtyTracking.queryIommu(bitmap, iova, size, options.noClear ?? false);
  }

  /** @see MemoryListener: map a RAM section, or follow a guest IOMMU's window. */
  async regionAdd(section: MemorySection): Promise<void> {
    const range = pageRange(section.start, section.size, this.space.memory.pageSize);
    if (!range) return;
    if (section.kind === 'iommu') return this.#followGuestIommu(section);
    const vaddr = section.block.hva + section.offset + (range.start - section.start);
    try {
      await this.dmaMap(range.start, range.size, vaddr, section.readonly);
    } catch (e) {
      throw new VfioError(`map RAM block ${section.block.name} at 0x${range.start.toString(16)} into ${this.id}`, undefined, { cause: e });
    }
  }

  /** @see MemoryListener: unmap a section. */
  async regionDel(section: MemorySection): Promise<void> {
    const range = pageRange(section.start, section.size, this.space.memory.pageSize);
    if (!range) return;
    if (section.kind === 'iommu') {
      const notifier = this.#guestIommuNotifiers.get(section);
      this.#guestIommuNotifiers.delete(section);
      if (notifier) await section.region.removeNotifier(notifier);
    }
    if (range.size === IOVA_SPACE) {
      // The unmap ioctls take a 64-bit size: a full 64-bit window goes in two halves.
      await this.dmaUnmap(range.start, range.size / 2n);
      await this.dmaUnmap(range.start + range.size / 2n, range.size / 2n);
      return;
    }
    await this.dmaUnmap(range.start, range.size);
  }

  /** A backend freed one of the IO page tables it named for dirty tracking: it tracks nothing any more. */
  protected pageTableReleased(table: number): void {
    this.dirtyTracking.forget(table);
  }

  /** Follow a guest IOMMU: its mappings become DMA mappings of guest RAM (vfio_iommu_map_notify). */
  async #followGuestIommu(section: Extract<MemorySection, { kind: 'iommu' }>): Promise<void> {
    const memory = this.space.memory;
    const notifier: IommuNotifier = {
      map: (m: IommuMapping) => {
        const { block, offset } = memory.locate(m.gpa, Number(m.size));
        return this.dmaMap(m.iova, m.size, block.hva + BigInt(offset), m.readonly);
      },
      unmap: (m: IommuMapping) => this.dmaUnmap(m.iova, m.size, { dirty: { gpa: m.gpa, memory } }),
    };
    await section.region.addNotifier(notifier);
    this.#guestIommuNotifiers.set(section, notifier);
  }

  /** The backend's IOMMU dirty-tracking hooks, when it has all of them. */
  #iommuDirtyHooks(): IommuDirtyHooks | undefined {
    const { doDirtyTrackingTables, doSetDirtyTracking, doQueryDirtyBitmap, doDmaUnmapHarvest } = this;
    if (!doDirtyTrackingTables || !doSetDirtyTracking || !doQueryDirtyBitmap || !doDmaUnmapHarvest) return undefined;
    return {
      tables: () => doDirtyTrackingTables.call(this),
      set: (table, start) => doSetDirtyTracking.call(this, table, start),
      query: (table, bitmap, iova, size, noClear) => doQueryDirtyBitmap.call(this, table, bitmap, iova, size, noClear),
      unmapHarvest: (iova, size, bitmap, tables) => doDmaUnmapHarvest.call(this, iova, size, bitmap, tables),
    };
  }

  /** Read the container's capabilities from the kernel (QEMU's ops->setup); defaults where left out. */
  protected doSetup?(): VfioContainerInfo | Promise<VfioContainerInfo>;
  protected abstract doDmaMap(iova: bigint, size: bigint, vaddr: bigint, readonly: boolean): Promise<void>;
  /** Unmap a range, or everything with `all`. Unmapping nothing is not an error. */
  protected abstract doDmaUnmap(iova: bigint, size: bigint, all: boolean): Promise<void>;
  /** Release the kernel object behind the container (free the IOAS, close the container fd). */
  protected abstract doRelease(): void | Promise<void>;
  /**
   * IOMMU dirty tracking, optional as a set of four: the IO page tables a start switches on, by
   * backend-defined id (iommufd: its dirty-tracking HWPTs; type1: the container itself).
   */
  protected doDirtyTrackingTables?(): readonly number[];
  /** Switch one table's dirty tracking on or off. */
  protected doSetDirtyTracking?(table: number, start: boolean): void | Promise<void>;
  /** OR one table's dirty bits for a range into `bitmap.incoming` (bit 0 = iova). */
  protected doQueryDirtyBitmap?(table: number, bitmap: DirtyBitmap, iova: bigint, size: bigint, noClear: boolean): Promise<void>;
  /** Unmap a range and report the dirty bits of `tables` for it into `bitmap.incoming`. */
  protected doDmaUnmapHarvest?(iova: bigint, size: bigint, bitmap: DirtyBitmap, tables: readonly number[]): Promise<void>;
}

function withDefaults(info: VfioContainerInfo, pageSize: number): Required<VfioContainerInfo> {
  return {
    iovaRanges: info.iovaRanges?.length ? info.iovaRanges : [FULL_IOVA_RANGE],
    pgsizes: info.pgsizes || BigInt(pageSize),
    dmaMaxMappings: info.dmaMaxMappings ?? 0,
    maxDirtyBitmapSize: info.maxDirtyBitmapSize ?? 0n,
    dirtyPgsizes: info.dirtyPgsizes ?? 0n,
  };
}
