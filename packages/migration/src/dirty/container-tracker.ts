// Dirty tracking of one container during a migration: started with the container's strategy,
// synced into the guest memory's dirty log (translating IOVAs through a guest IOMMU's mappings),
// and stopped — every step as QEMU's log_global_start, log_sync and log_global_stop do it.

import {
  FirstError, VmmError, startDmaLogging, stopDmaLogging,
  type GuestMemory, type HostKernel, type MemorySection, type VfioContainerBase,
} from '@vmmkit/core';
import { dmaLoggingRanges } from './dma-logging-ranges.js';
import { containerStrategy, type DirtyTrackingStrategy } from './strategy.js';

/** Dirty tracking could not start (QEMU: "vfio: Could not start dirty page tracking"). */
export class DirtyTrackingError extends VmmError {
  override readonly name = 'DirtyTrackingError';
  readonly code = 'DIRTY_TRACKING';

  constructor(readonly container: string, cause: unknown) {
    super(`${container}: could not start dirty page tracking: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

export class ContainerDirtyTracker {
  readonly strategy: DirtyTrackingStrategy;
  #started = false;

  constructor(
    readonly container: VfioContainerBase,
    private readonly host: HostKernel,
    private readonly memory: GuestMemory,
  ) {
    this.strategy = containerStrategy(container).strategy;
  }

  /**
   * Start tracking. Device logging starts on every device or on none: a device that refuses
   * stops those already started.
   * @throws DirtyTrackingError naming the container and what refused.
   */
  async start(): Promise<void> {
    try {
      if (this.strategy === 'device') await this.#startDeviceLogging();
      else if (this.strategy === 'iommu') await this.container.setDirtyPageTracking(true);
    } catch (e) {
      throw new DirtyTrackingError(this.container.id, e);
    }
    this.#started = true;
  }

  /**
   * Fold the container's dirty pages into the guest memory's dirty log; returns the pages newly
   * marked. `precopy` syncs are skipped for devices with x-pre-copy-dirty-page-tracking=off
   * (QEMU's vfio_log_sync_needed): their pages are found at stop-copy.
   */
  async sync(precopy: boolean): Promise<number> {
    if (!this.#started) return 0;
    if (precopy && this.container.devices.some((d) => !d.preCopyDirtyPageTracking)) return 0;
    let found = 0;
    for (const section of this.container.space.as.sections) found += await this.#syncSection(section);
    return found;
  }

  /** Stop tracking; carries on through failures and throws the first. Idempotent. */
  async stop(): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    if (this.strategy === 'device') this.#stopDeviceLogging().rethrow();
    else if (this.strategy === 'iommu') await this.container.setDirtyPageTracking(false);
  }

  async #startDeviceLogging(): Promise<void> {
    const ranges = dmaLoggingRanges(this.container);
    try {
      for (const d of this.container.devices) await startDmaLogging(this.host, d, ranges);
    } catch (e) {
      // The device that refused is the failure to report; stopping the others is best effort.
      this.#stopDeviceLogging();
      throw e;
    }
  }

  /** Stop DMA logging on every device that runs it, carrying on through failures (returned). */
  #stopDeviceLogging(): FirstError {
    const errors = new FirstError();
    for (const d of this.container.devices) if (d.dirtyTrackingStarted) errors.run(() => stopDmaLogging(this.host, d));
    return errors;
  }

  async #syncSection(section: MemorySection): Promise<number> {
    if (section.kind === 'ram') {
      const { block } = section;
      // A section that is a whole RAM block is reported straight into the block's dirty log.
      if (section.offset === 0n && section.size === block.size && block.dirty) {
        return this.container.syncDirtyBitmap(section.start, section.size, block.dirty);
      }
      return this.container.syncDirtyToMemory(section.start, section.size, this.memory, block.gpa + section.offset);
    }
    // Behind a guest IOMMU: what is mapped now, each range marked at the RAM it translates to.
    let found = 0;
    for (const m of section.region.mappings()) found += await this.container.syncDirtyToMemory(m.iova, m.size, this.memory, m.gpa);
    return found;
  }
}
