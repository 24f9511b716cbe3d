// The type1 IOMMU backend of a container (struct vfio_iommu, drivers/vfio/vfio_iommu_type1.c):
// its DMA mappings, its domains (one per IOMMU unit), the valid IOVA list they leave, and how
// groups attach to and detach from it. The ioctls live in type1-ioctls.ts.

import { RangeMap } from '../kernel/range-map.js';
import { fail } from '../kernel/sim-errno.js';
import type { SimGroup } from '../kernel/sim-group.js';
import type { SimKernel } from '../kernel/sim-kernel.js';
import type { UserMemory } from '../memory/user-memory.js';
import { SparseBitmap } from '../iommu/sparse-bitmap.js';
import { machineClient, setGroupDmaTarget, type IommuUnit } from '../iommufd/iommu-unit.js';
import { holesOf, intersects, lowestBit, PAGE_SIZE, U64_MAX, type IovaRange } from '../iommufd/iova-range.js';
import { Type1Dma, Type1Target } from './type1-dma.js';

/** The dma_entry_limit module parameter's default (U16_MAX mappings per container). */
export const DMA_ENTRY_LIMIT = 65535;
/** PAGE_MASK: a container without IOMMU domains reports every multiple of PAGE_SIZE. */
const PAGE_MASK = U64_MAX & ~(PAGE_SIZE - 1n);

/** A vfio_domain: the IOMMU groups of one IOMMU unit, sharing one domain. */
interface Type1Domain {
  readonly unit: IommuUnit;
  readonly pageSizes: bigint;
  readonly groups: Set<SimGroup>;
}

export class Type1Iommu {
  readonly dmas = new RangeMap<Type1Dma>();
  readonly domains: Type1Domain[] = [];
  /** Groups of mdevs: no IOMMU of their own, they reach memory through vfio_dma_rw. */
  readonly emulatedGroups = new Set<SimGroup>();
  iovaList: IovaRange[] = [];
  pgsizeBitmap = PAGE_MASK;
  dmaAvail = DMA_ENTRY_LIMIT;
  dirtyTracking = false;
  /** IOMMU-backed groups: devices that can write memory type1 cannot see (num_non_pinned_groups). */
  nonPinnedGroups = 0;
  /** Pages written through vfio_dma_rw while tracking, at the smallest page size. */
  readonly pinnedDirty = new SparseBitmap();
  readonly #hardware = new Type1Target(this, false);
  readonly #emulated = new Type1Target(this, true);

  constructor(
    readonly kernel: SimKernel,
    /** VFIO_TYPE1v2_IOMMU (strict unmap rules, dirty tracking). */
    readonly v2: boolean,
  ) {}

  get memory(): UserMemory {
    return this.kernel.memory;
  }

  /** The smallest supported IOMMU page size. */
  get pgsize(): bigint {
    return lowestBit(this.pgsizeBitmap);
  }

  /** vfio_iommu_type1_attach_group: all checks first, then the group joins a domain. */
  attachGroup(group: SimGroup): void {
    if (this.emulatedGroups.has(group) || this.domains.some((d) => d.groups.has(group))) fail('EINVAL', `group ${group.id} is already attached`);
    if (group.devices.every((d) => d.mdev)) {
      this.emulatedGroups.add(group);
      setGroupDmaTarget(group, this.#emulated);
      return;
    }
    const client = machineClient(group.devices.find((d) => !d.mdev && d.vfioBound) ?? group.devices[0]!);
    const unit = client.unit;
    const reserved = unit.reservedRegions(client);
    if (this.#apertureConflict(unit.aperture)) fail('EINVAL', `the aperture of ${unit.name} conflicts with the IOVA list or a mapping`);
    if (reserved.some((r) => this.dmas.overlapping(r.start, r.last).length)) fail('EINVAL', 'a reserved region of the group is mapped');
    const iovaList = excludeReserved(resizeAperture(this.iovaList, unit.aperture), reserved);
    if (!iovaList.length) fail('EINVAL', 'no valid IOVA range would remain');
    let domain = this.domains.find((d) => d.unit === unit);
    if (!domain) {
      this.#replay();
      domain = { unit, pageSizes: unit.domainPageSizes(client), groups: new Set() };
      this.domains.push(domain);
    }
    domain.groups.add(group);
    this.iovaList = iovaList;
    this.#updatePgsize();
    this.nonPinnedGroups++;
    setGroupDmaTarget(group, this.#hardware);
  }

  /** vfio_iommu_type1_detach_group: the last IOMMU domain takes the mappings with it unless mdevs remain. */
  detachGroup(group: SimGroup): void {
    setGroupDmaTarget(group, undefined);
    if (this.emulatedGroups.delete(group)) {
      if (!this.emulatedGroups.size && !this.domains.length) this.unmapAll();
      return;
    }
    const index = this.domains.findIndex((d) => d.groups.has(group));
    if (index < 0) return;
    const domain = this.domains[index]!;
    domain.groups.delete(group);
    if (!domain.groups.size) {
      if (this.domains.length === 1) {
        if (!this.emulatedGroups.size) this.unmapAll();
        else for (const { value } of this.dmas) value.pinned = undefined;
      }
      this.domains.splice(index, 1);
      this.#updatePgsize();
    }
    this.#refreshIovaList();
    this.nonPinnedGroups--;
    if (this.dirtyTracking) for (const { value } of this.dmas) this.#markAll(value);
  }

  /** Start or stop dirty page tracking, keeping the census of tracking page tables. */
  setDirtyTracking(on: boolean): void {
    if (on === this.dirtyTracking) return;
    this.dirtyTracking = on;
    if (on) this.kernel.census.add('iommu_dirty_tracking');
    else this.kernel.census.remove('iommu_dirty_tracking');
  }

  /** Release the backend (the container's last group left): every mapping goes. */
  release(): void {
    this.setDirtyTracking(false);
    this.unmapAll();
  }

  /** Whether a mapping of [start, last] would lie in one valid IOVA range (anywhere without a list). */
  iovaValid(start: bigint, last: bigint): boolean {
    return !this.iovaList.length || this.iovaList.some((r) => start >= r.start && last <= r.last);
  }

  /** Remove one mapping (vfio_remove_dma). */
  removeDma(dma: Type1Dma): void {
    this.dmas.delete(this.dmas.find(dma.iova)!);
    this.#clearPinnedDirty(dma);
    this.dmaAvail++;
  }

  /** vfio_iommu_unmap_unpin_all. */
  unmapAll(): void {
    for (const { value } of [...this.dmas]) this.removeDma(value);
  }

  /** An mdev wrote [iova, iova + length) through vfio_dma_rw: dirty while tracking. */
  markPinnedDirty(iova: bigint, length: number): void {
    if (!this.dirtyTracking || length <= 0) return;
    const first = this.#page(iova);
    this.pinnedDirty.setRange(first, this.#page(iova + BigInt(length) - 1n) - first + 1);
  }

  /** Page index at the smallest page size. */
  #page(iova: bigint): number {
    return Number(iova / this.pgsize);
  }

  #markAll(dma: Type1Dma): void {
    this.pinnedDirty.setRange(this.#page(dma.iova), Number(dma.size / this.pgsize));
  }

  #clearPinnedDirty(dma: Type1Dma): void {
    this.pinnedDirty.clearRange(this.#page(dma.iova), Number(dma.size / this.pgsize));
  }

  /** vfio_iommu_replay: a new domain maps (and so pins) every mapping; EFAULT changes nothing. */
  #replay(): void {
    const pinned: Type1Dma[] = [];
    try {
      for (const { value: dma } of this.dmas) {
        if (dma.pinned) continue;
        dma.pin(this.memory);
        pinned.push(dma);
      }
    } catch (e) {
      for (const dma of pinned) dma.pinned = undefined;
      throw e;
    }
  }

  /** vfio_iommu_aper_conflict. */
  #apertureConflict(aperture: IovaRange): boolean {
    if (!this.iovaList.length) return false;
    const first = this.iovaList[0]!;
    const last = this.iovaList[this.iovaList.length - 1]!;
    if (aperture.start > last.last || aperture.last < first.start) return true;
    if (aperture.start > first.start && this.dmas.overlapping(first.start, aperture.start - 1n).length) return true;
    return aperture.last < last.last && this.dmas.overlapping(aperture.last + 1n, last.last).length > 0;
  }

  /** vfio_update_pgsize_bitmap: sizes all domains share, sub-page sizes shown as PAGE_SIZE. */
  #updatePgsize(): void {
    let bitmap = U64_MAX;
    for (const d of this.domains) bitmap &= d.pageSizes;
    if (bitmap & (PAGE_SIZE - 1n)) bitmap = (bitmap & PAGE_MASK) | PAGE_SIZE;
    this.pgsizeBitmap = bitmap;
  }

  /** vfio_iommu_aper_expand + vfio_iommu_resv_refresh after a group left. */
  #refreshIovaList(): void {
    if (!this.iovaList.length) return;
    let window: IovaRange = { start: 0n, last: U64_MAX };
    const reserved: IovaRange[] = [];
    for (const d of this.domains) {
      const a = d.unit.aperture;
      window = { start: a.start > window.start ? a.start : window.start, last: a.last < window.last ? a.last : window.last };
      for (const g of d.groups) {
        const client = machineClient(g.devices.find((x) => !x.mdev && x.vfioBound) ?? g.devices[0]!);
        reserved.push(...d.unit.reservedRegions(client));
      }
    }
    const list = excludeReserved([window], reserved);
    if (list.length) this.iovaList = list;
  }
}

/** vfio_iommu_aper_resize: clip the list to the aperture (or start it from the aperture). */
function resizeAperture(list: readonly IovaRange[], aperture: IovaRange): IovaRange[] {
  if (!list.length) return [aperture];
  return list.filter((r) => intersects(r, aperture)).map((r) => ({
    start: r.start > aperture.start ? r.start : aperture.start,
    last: r.last < aperture.last ? r.last : aperture.last,
  }));
}

/** vfio_iommu_resv_exclude: cut the reserved regions out of the list. */
function excludeReserved(list: readonly IovaRange[], reserved: readonly IovaRange[]): IovaRange[] {
  return list.flatMap((r) => holesOf(reserved, r.start, r.last));
}
