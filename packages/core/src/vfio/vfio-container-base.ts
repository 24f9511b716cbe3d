// The shared state and logic of a VFIO container (QEMU's VFIOContainerBase and its memory
// listener): what every backend's container has, and the public operations that call the
// backend's hooks. Dirty-tracking state changes only after the hook succeeds.

import type { HostKernel } from '../host/host-kernel.js';
import { HOST_PAGE_SIZE } from '../host/posix.js';
import { InvariantError, VfioError } from '../errors/vmm-error.js';
import type { VmmEventBus } from '../events/vmm-events.js';
import type { MemoryListener, MemorySection } from '../memory/address-space.js';
import { DirtyBitmap } from '../memory/dirty-bitmap.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { IommuMapping, IommuNotifier } from '../memory/iommu-memory-region.js';
import { FULL_IOVA_RANGE, type IovaRange } from './iova-range.js';
import type { VfioAddressSpace } from './vfio-address-space.js';
import { reportDmaLogging } from './dma-logging.js';
import type { VfioDevice } from './vfio-device.js';
import type { VfioIommuClass } from './vfio-iommu-class.js';

const PAGE = BigInt(HOST_PAGE_SIZE);
const IOVA_SPACE = 1n << 64n;

/** Where the dirty bits of an unmapped range go: the guest memory the IOVA translated to. */
export interface DirtyHarvest {
  /** The guest physical address the first unmapped IOVA translated to. */
  readonly gpa: bigint;
  readonly memory: GuestMemory;
}

export interface DmaUnmapOptions {
  /** Unmap everything the container has mapped; `iova` and `size` are ignored. */
  readonly all?: boolean;
  /**
   * Harvest the range's dirty bits before it goes, when dirty tracking is running (a guest
   * IOMMU unmapping during migration): once unmapped, the IO page table forgets them.
   */
  readonly dirty?: DirtyHarvest;
}

export interface QueryDirtyOptions {
  /** Leave the dirty bits set (IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR): the range is unmapped next anyway. */
  readonly noClear?: boolean;
}

/** One VFIO container: a set of IO page tables all devices in it share. */
export abstract class VfioContainerBase implements MemoryListener {
  /** The devices attached to the container. */
  readonly devices: VfioDevice[] = [];
  /** The IOVA ranges the container can map. */
  iovaRanges: readonly IovaRange[] = [FULL_IOVA_RANGE];
  /** Supported IOMMU page sizes (bitmap of sizes). */
  pgsizes = PAGE;
  /** The container's IOMMU can track dirty pages (for at least one of its IO page tables). */
  dirtyPagesSupported = false;
  /** Page sizes the IOMMU reports dirty pages at. */
  dirtyPgsizes = 0n;
  /** The largest dirty bitmap the kernel accepts in one call (type1's migration capability); 0 = no limit. */
  maxDirtyBitmapSize = 0n;
  /** How many DMA mappings the kernel allows (type1's DMA_AVAIL); 0 = unknown. */
  dmaMaxMappings = 0;
  #dirtyPagesStarted = false;
  #listening = false;
  readonly #guestIommuNotifiers = new Map<MemorySection, IommuNotifier>();

  protected constructor(
    /** A name for messages and events, e.g. `legacy-container-1`. */
    readonly id: string,
    readonly iommuClass: VfioIommuClass,
    readonly space: VfioAddressSpace,
    protected readonly host: HostKernel,
    protected readonly events: VmmEventBus,
  ) {}

  /** IOMMU dirty tracking is running. */
  get dirtyPagesStarted(): boolean {
    return this.#dirtyPagesStarted;
  }

  /** Whether the container maps the address space's memory (the listener is registered). */
  get listening(): boolean {
    return this.#listening;
  }

  /**
   * Map [iova, iova + size) to host memory at `vaddr`.
   * @throws VfioError naming the range and the kernel's errno.
   */
  async dmaMap(iova: bigint, size: bigint, vaddr: bigint, readonly: boolean): Promise<void> {
    if (size <= 0n) throw new VfioError(`map IOVA 0x${iova.toString(16)}`, undefined, { detail: 'size must be positive' });
    await this.doDmaMap(iova, size, vaddr, readonly);
  }

  /**
   * Unmap [iova, iova + size), or everything with `all`. With `dirty`, while dirty tracking runs,
   * the range's dirty bits are harvested into the guest memory's dirty log first (type1: unmap
   * with a dirty bitmap; iommufd: read without clearing, then unmap); with device dirty
   * tracking the device logs are read after the unmap, as they outlive it.
   */
  async dmaUnmap(iova: bigint, size: bigint, options: DmaUnmapOptions = {}): Promise<void> {
    if (options.all) return this.doDmaUnmap(0n, 0n, true);
    if (size <= 0n) throw new VfioError(`unmap IOVA 0x${iova.toString(16)}`, undefined, { detail: 'size must be positive' });
    const harvest = options.dirty && this.dirtyTrackingIsStarted() ? options.dirty : undefined;
    if (harvest && this.dirtyPagesSupported && !this.devicesAllDeviceDirtyTracking()) {
      if (!this.doDmaUnmapHarvest) throw new InvariantError(`${this.id}: dirty tracking without an unmap-and-harvest hook`);
      const bitmap = new DirtyBitmap(Number((size + PAGE - 1n) / PAGE));
      await this.doDmaUnmapHarvest(iova, size, bitmap);
      bitmap.mergeIncoming();
      harvest.memory.mergeDirty(harvest.gpa, bitmap);
      return;
    }
    await this.doDmaUnmap(iova, size, false);
    // Device logs outlive the unmap; with no tracker at all every page counts as dirty.
    if (harvest) await this.syncDirtyToMemory(iova, size, harvest.memory, harvest.gpa);
  }

  /** Start or stop IOMMU dirty tracking. A no-op when unsupported or already in that state. */
  async setDirtyPageTracking(start: boolean): Promise<void> {
    if (!this.dirtyPagesSupported || this.#dirtyPagesStarted === start) return;
    if (!this.doSetDirtyPageTracking) throw new InvariantError(`${this.id}: dirtyPagesSupported without a set-dirty-tracking hook`);
    await this.doSetDirtyPageTracking(start);
    this.#dirtyPagesStarted = start;
    this.events.emit('vfio:dirty-tracking-changed', { container: this.id, started: start });
  }

  /**
   * OR the IOMMU's dirty bits for [iova, iova + size) into `bitmap.incoming` (bit 0 = iova; one
   * bit per host page); fold them in with `bitmap.mergeIncoming()`.
   * @throws VfioError when the container cannot track dirty pages or the kernel refuses.
   */
  async queryDirtyBitmap(bitmap: DirtyBitmap, iova: bigint, size: bigint, options: QueryDirtyOptions = {}): Promise<void> {
    if (!this.dirtyPagesSupported || !this.doQueryDirtyBitmap) {
      throw new VfioError(`query dirty pages of ${this.id}`, undefined, { detail: 'the container does not track dirty pages' });
    }
    const pages = (size + PAGE - 1n) / PAGE;
    if (BigInt(bitmap.pages) < pages) {
      throw new RangeError(`dirty bitmap of ${bitmap.pages} pages is too small for 0x${size.toString(16)} bytes`);
    }
    await this.doQueryDirtyBitmap(bitmap, iova, size, options.noClear ?? false);
  }

  /**
   * Fold the dirty pages of [iova, iova + size) into `into` (bit 0 = iova), as QEMU's
   * vfio_get_dirty_bitmap does for a container: from every device's DMA log when all devices
   * log, else from the IOMMU when it tracks, else every page counts as dirty. Pass a RAM
   * block's own dirty log to have the kernel report straight into it. Returns the pages newly
   * marked dirty in `into`.
   */
  async syncDirtyBitmap(iova: bigint, size: bigint, into: DirtyBitmap): Promise<number> {
    const pages = Number((size + PAGE - 1n) / PAGE);
    const deviceLogs = this.devicesAllDeviceDirtyTracking();
    if (!this.dirtyPagesSupported && !deviceLogs) return into.setRange(0, pages);
    if (deviceLogs) {
      for (const device of this.devices) await reportDmaLogging(this.host, device, into, iova, size);
    } else {
      await this.queryDirtyBitmap(into, iova, size);
    }
    return into.mergeIncoming();
  }

  /**
   * `syncDirtyBitmap` for [iova, iova + size), marked in `memory`'s dirty log at the guest
   * physical address `gpa` the range translates to. Returns the pages newly marked.
   */
  async syncDirtyToMemory(iova: bigint, size: bigint, memory: GuestMemory, gpa: bigint): Promise<number> {
    const bitmap = new DirtyBitmap(Number((size + PAGE - 1n) / PAGE));
    await this.syncDirtyBitmap(iova, size, bitmap);
    return memory.mergeDirty(gpa, bitmap);
  }

  /** Every device supports DMA logging and none has x-device-dirty-page-tracking=off. */
  devicesAllDeviceDirtyTracking(): boolean {
    return this.devices.every((d) => d.deviceDirtyPageTracking !== 'off' && d.dirtyPagesSupported);
  }

  /** IOMMU tracking runs, or every device's DMA logging does. */
  dirtyTrackingIsStarted(): boolean {
    return this.#dirtyPagesStarted || (this.devices.length > 0 && this.devices.every((d) => d.dirtyTrackingStarted));
  }

  /** Map the address space's memory and follow it (memory_listener_register). Undone on failure. */
  async startListening(): Promise<void> {
    if (this.#listening) return;
    await this.space.as.addListener(this);
    this.#listening = true;
  }

  /** Unmap the address space's memory and stop following it. */
  async stopListening(): Promise<void> {
    if (!this.#listening) return;
    this.#listening = false;
    await this.space.as.removeListener(this);
  }

  async regionAdd(section: MemorySection): Promise<void> {
    const range = pageRange(section.start, section.size);
    if (!range) return;
    if (section.kind === 'iommu') return this.#followGuestIommu(section);
    const vaddr = section.block.hva + section.offset + (range.iova - section.start);
    try {
      await this.dmaMap(range.iova, range.size, vaddr, section.readonly);
    } catch (e) {
      throw new VfioError(`map RAM block ${section.block.name} at 0x${range.iova.toString(16)} into ${this.id}`, undefined, { cause: e });
    }
  }

  async regionDel(section: MemorySection): Promise<void> {
    const range = pageRange(section.start, section.size);
    if (!range) return;
    if (section.kind === 'iommu') {
      const notifier = this.#guestIommuNotifiers.get(section);
      this.#guestIommuNotifiers.delete(section);
      if (notifier) await section.region.removeNotifier(notifier);
    }
    if (range.size === IOVA_SPACE) {
      // The unmap ioctls take a 64-bit size: a full 64-bit window goes in two halves.
      await this.dmaUnmap(range.iova, range.size / 2n);
      await this.dmaUnmap(range.iova + range.size / 2n, range.size / 2n);
      return;
    }
    await this.dmaUnmap(range.iova, range.size);
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

  protected abstract doDmaMap(iova: bigint, size: bigint, vaddr: bigint, readonly: boolean): Promise<void>;
  /** Unmap a range, or everything with `all`. Unmapping nothing is not an error. */
  protected abstract doDmaUnmap(iova: bigint, size: bigint, all: boolean): Promise<void>;
  /** Unmap a range and report its dirty bits into `bitmap.incoming` (bit 0 = iova). Needed with dirtyPagesSupported. */
  protected doDmaUnmapHarvest?(iova: bigint, size: bigint, bitmap: DirtyBitmap): Promise<void>;
  /** Start or stop IOMMU dirty tracking. Needed with dirtyPagesSupported. */
  protected doSetDirtyPageTracking?(start: boolean): Promise<void>;
  /** OR the dirty bits of a range into `bitmap.incoming`. Needed with dirtyPagesSupported. */
  protected doQueryDirtyBitmap?(bitmap: DirtyBitmap, iova: bigint, size: bigint, noClear: boolean): Promise<void>;
}

/** The whole host pages inside [start, start + size), or undefined if none (vfio_listener_region_add). */
function pageRange(start: bigint, size: bigint): { iova: bigint; size: bigint } | undefined {
  const iova = ((start + PAGE - 1n) / PAGE) * PAGE;
  const end = ((start + size) / PAGE) * PAGE;
  return iova < end ? { iova, size: end - iova } : undefined;
}
