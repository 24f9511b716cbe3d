// The dirty tracking of one VFIO container, as one state machine owned by the container (what
// QEMU spreads over vfio_listener_log_global_start/stop, vfio_listener_log_sync and the unmap
// bitmap path). Its verbs are start, sync, stop and the unmap harvest. It decides the strategy
// once at start and remembers exactly what it turned on (which devices log, which IO page tables
// track), so stop turns off exactly that, whatever changed since; what a failed stop leaves on
// stays remembered and the next stop tries it again.

import { InvariantError, VfioError } from '../../errors/vmm-error.js';
import { FirstFailure } from '../../errors/first-failure.js';
import type { VmmEventBus } from '../../events/vmm-events.js';
import type { HostKernel } from '../../host/host-kernel.js';
import type { MemorySection } from '../../memory/address-space.js';
import { DirtyBitmap } from '../../memory/dirty-bitmap.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { pagesIn } from '../../memory/page-range.js';
import type { VfioDevice } from '../vfio-device.js';
import { dmaLoggingRanges } from './dma-logging-ranges.js';
import { reportDmaLogging, startDmaLogging, stopDmaLogging } from './dma-logging.js';
import { decideDirtyTracking, type DirtyTrackingDecision, type DirtyTrackingStrategy } from './dirty-tracking-strategy.js';

/** Where the dirty bits of an unmapped range go: the guest memory the IOVA translated to. */
export interface DirtyHarvest {
  /** The guest physical address the first unmapped IOVA translated to. */
  readonly gpa: bigint;
  readonly memory: GuestMemory;
}

/**
 * The IOMMU side of dirty tracking, as a container's backend implements it (the container hands
 * its hooks to the state machine, which is their only caller).
 */
export interface IommuDirtyHooks {
  /** The IO page tables an IOMMU start switches on, by backend-defined id (iommufd: HWPT ids). */
  tables(): readonly number[];
  /** Switch one table's dirty tracking on or off. */
  set(table: number, start: boolean): void | Promise<void>;
  /** OR the table's dirty bits for [iova, iova + size) into `bitmap.incoming` (bit 0 = iova). */
  query(table: number, bitmap: DirtyBitmap, iova: bigint, size: bigint, noClear: boolean): Promise<void>;
  /** Unmap a range, reporting the dirty bits of `tables` for it into `bitmap.incoming` on the way. */
  unmapHarvest(iova: bigint, size: bigint, bitmap: DirtyBitmap, tables: readonly number[]): Promise<void>;
}

/** What the state machine works on: the container as it is now. */
export interface DirtyTrackingSubject {
  readonly id: string;
  devices(): readonly VfioDevice[];
  /** The sections the container maps (its address space's). */
  sections(): readonly MemorySection[];
  readonly memory: GuestMemory;
  readonly host: HostKernel;
  readonly events: VmmEventBus;
  /** Unmap a range without harvesting (the container's own unmap). */
  unmap(iova: bigint, size: bigint): Promise<void>;
}

/** `stopped`: nothing on. `running`: started, syncs work. `stopping`: a stop (or a failed start) left something on; call stop() again. */
export type DirtyTrackingState = 'stopped' | 'running' | 'stopping';

/** What a start turned on, kept until it is off again. */
interface Session {
  readonly strategy: DirtyTrackingStrategy;
  readonly logging: VfioDevice[];
  readonly tables: number[];
  running: boolean;
  /** The start completed and said so: its stop says so too. */
  announced: boolean;
}

export class VfioDirtyTracking {
  #session: Session | undefined;

  constructor(private readonly subject: DirtyTrackingSubject, private readonly iommu: IommuDirtyHooks | undefined) {}

  get state(): DirtyTrackingState {
    return !this.#session ? 'stopped' : this.#session.running ? 'running' : 'stopping';
  }

  /** The strategy running now, or, when stopped, the one a start would pick (the one decision). */
  get strategy(): DirtyTrackingStrategy {
    return this.#session?.strategy ?? this.decide().strategy;
  }

  /** The strategy a start would pick for the container's devices now, and why. */
  decide(): DirtyTrackingDecision {
    const decision = decideDirtyTracking(this.subject.devices());
    // A backend without IOMMU hooks cannot track, whatever its devices claim.
    if (decision.strategy === 'iommu' && !this.iommu) {
      return { strategy: 'all-dirty', reason: 'the backend has no IOMMU dirty tracking: every mapped page counts as dirty' };
    }
    return decision;
  }

  /** The devices whose DMA logging this state machine turned on (and has not turned off). */
  get loggingDevices(): readonly VfioDevice[] {
    return this.#session?.logging ?? [];
  }

  /**
   * Start tracking with the strategy decided now. All or nothing: a refusal turns off what this
   * start turned on (what it cannot turn off stays for `stop`).
   * @throws VfioError naming the container, the device where one refused, the step and the errno.
   */
  async start(): Promise<void> {
    const { id } = this.subject;
    if (this.#session) throw new VfioError(`start dirty page tracking of ${id}`, undefined, { errno: 'EBUSY', detail: `it is ${this.state} (stop it first)` });
    const session: Session = { strategy: this.decide().strategy, logging: [], tables: [], running: false, announced: false };
    this.#session = session;
    let device: VfioDevice | undefined;
    try {
      if (session.strategy === 'device') {
        const ranges = dmaLoggingRanges(this.subject.sections(), this.subject.memory.pageSize);
        for (device of this.subject.devices()) {
          await startDmaLogging(device, ranges, this.subject.memory.pageSize);
          session.logging.push(device);
        }
      } else if (session.strategy === 'iommu') {
        const tables = this.iommu!.tables();
        if (tables.length === 0) throw new InvariantError(`${id}: IOMMU dirty tracking decided, but the backend names no IO page table to track`);
        for (const table of tables) {
          await this.iommu!.set(table, true);
          session.tables.push(table);
        }
      }
    } catch (e) {
      await this.stop().catch(() => undefined);
      throw new VfioError(`start dirty page tracking (${session.strategy}) of ${this.#describe()}`, device?.name, { cause: e });
    }
    session.running = true;
    session.announced = true;
    this.subject.events.emit('vfio:dirty-tracking-changed', { container: id, started: true, strategy: session.strategy });
  }

  /**
   * Turn off exactly what start turned on. Every item is tried; what fails stays on record (the
   * state is then `stopping`) and the next stop tries it again. Idempotent when stopped.
   * @throws VfioError naming the container, the device where one refused, the step and the errno.
   */
  async stop(): Promise<void> {
    const session = this.#session;
    if (!session) return;
    session.running = false;
    const failures = new FirstFailure();
    let failedDevice: VfioDevice | undefined;
    for (const device of [...session.logging]) {
      try {
        await stopDmaLogging(device);
        session.logging.splice(session.logging.indexOf(device), 1);
      } catch (e) {
        failedDevice ??= device;
        failures.keep(e);
      }
    }
    for (const table of [...session.tables]) {
      await failures.runAsync(async () => {
        await this.iommu!.set(table, false);
        session.tables.splice(session.tables.indexOf(table), 1);
      });
    }
    const { id, events } = this.subject;
    if (failures.failed) {
      const error = new VfioError(`stop dirty page tracking (${session.strategy}) of ${this.#describe()}`, failedDevice?.name, { cause: failures.first });
      events.emit('vfio:warning', { container: id, message: `${error.message}; it stays on record and the next stop tries again` });
      throw error;
    }
    this.#session = undefined;
    if (session.announced) events.emit('vfio:dirty-tracking-changed', { container: id, started: false, strategy: session.strategy });
  }

  /**
   * A device leaves the container, or an IO page table is freed: closing the device's fd (or
   * destroying the table) ends its tracking in the kernel, so a stop must not try it again.
   */
  forget(item: VfioDevice | number): void {
    const session = this.#session;
    if (!session) return;
    const list: unknown[] = typeof item === 'number' ? session.tables : session.logging;
    const i = list.indexOf(item);
    if (i >= 0) list.splice(i, 1);
    if (!session.running && session.logging.length === 0 && session.tables.length === 0) this.#session = undefined;
  }

  /**
   * Fold the container's dirty pages into the guest memory's dirty log; returns the pages newly
   * marked. `precopy` syncs are skipped when a device has x-pre-copy-dirty-page-tracking=off
   * (QEMU's vfio_log_sync_needed): its pages are found at stop-copy.
   * @throws VfioError when tracking is not running, or the kernel refuses a report.
   */
  async sync(precopy: boolean): Promise<number> {
    this.#running('sync dirty pages');
    if (precopy && this.subject.devices().some((d) => !d.preCopyDirtyPageTracking)) return 0;
    let found = 0;
    try {
      for (const section of this.subject.sections()) found += await this.#syncSection(section);
    } catch (e) {
      throw new VfioError(`sync the dirty pages of ${this.#describe()}`, undefined, { cause: e });
    }
    return found;
  }

  /**
   * Unmap [iova, iova + size), first harvesting its dirty bits into `harvest.memory` while
   * tracking runs (a guest IOMMU unmapping during migration: once unmapped, the IO page table
   * forgets them). Device logs outlive the unmap and are read after it.
   */
  async harvestUnmap(iova: bigint, size: bigint, harvest: DirtyHarvest): Promise<void> {
    const session = this.#session;
    if (!session?.running) return this.subject.unmap(iova, size);
    if (session.strategy === 'iommu') {
      const bitmap = new DirtyBitmap(pagesIn(size, this.subject.memory.pageSize));
      await this.iommu!.unmapHarvest(iova, size, bitmap, session.tables);
      bitmap.mergeIncoming();
      harvest.memory.mergeDirty(harvest.gpa, bitmap);
      return;
    }
    await this.subject.unmap(iova, size);
    await this.#collectToMemory(iova, size, harvest.memory, harvest.gpa);
  }

  /**
   * OR the IOMMU's dirty bits for [iova, iova + size) into `bitmap.incoming` (bit 0 = iova); fold
   * them in with `bitmap.mergeIncoming()`. Only while IOMMU tracking runs.
   * @throws VfioError when the container does not track dirty pages through its IOMMU now.
   */
  async queryIommu(bitmap: DirtyBitmap, iova: bigint, size: bigint, noClear: boolean): Promise<void> {
    const session = this.#session;
    const step = `query the IOMMU dirty pages of ${this.subject.id}`;
    if (!session?.running || session.strategy !== 'iommu') {
      throw new VfioError(step, undefined, { detail: `the container does not track dirty pages through its IOMMU now (tracking is ${this.state}${session ? `, ${session.strategy}` : ''})` });
    }
    const pages = pagesIn(size, this.subject.memory.pageSize);
    if (bitmap.pages < pages) throw new VfioError(step, undefined, { errno: 'EINVAL', detail: `a bitmap of ${bitmap.pages} pages is too small for 0x${size.toString(16)} bytes` });
    for (const table of session.tables) await this.iommu!.query(table, bitmap, iova, size, noClear);
  }

  /** The container and its devices, for messages. */
  #describe(): string {
    return `${this.subject.id} (${this.subject.devices().map((d) => d.name).join(', ') || 'no devices'})`;
  }

  #running(step: string): Session {
    const session = this.#session;
    if (!session?.running) throw new VfioError(`${step} of ${this.subject.id}`, undefined, { detail: `dirty tracking is ${this.state}` });
    return session;
  }

  async #syncSection(section: MemorySection): Promise<number> {
    const memory = this.subject.memory;
    if (section.kind === 'ram') {
      const { block } = section;
      // A section that is a whole RAM block is reported straight into the block's dirty log.
      if (section.offset === 0n && section.size === block.size && block.dirty) return this.#collect(section.start, section.size, block.dirty);
      return this.#collectToMemory(section.start, section.size, memory, block.gpa + section.offset);
    }
    // Behind a guest IOMMU: what is mapped now, each range marked at the RAM it translates to.
    let found = 0;
    for (const m of section.region.mappings()) found += await this.#collectToMemory(m.iova, m.size, memory, m.gpa);
    return found;
  }

  /** The dirty pages of an IOVA range, marked in `memory` at the GPA it translates to (the one IOVA→GPA step). */
  async #collectToMemory(iova: bigint, size: bigint, memory: GuestMemory, gpa: bigint): Promise<number> {
    const bitmap = new DirtyBitmap(pagesIn(size, memory.pageSize));
    await this.#collect(iova, size, bitmap);
    return memory.mergeDirty(gpa, bitmap);
  }

  /** The dirty pages of an IOVA range, by the running strategy, into `into` (bit 0 = iova). Returns the pages newly set. */
  async #collect(iova: bigint, size: bigint, into: DirtyBitmap): Promise<number> {
    const session = this.#running('sync dirty pages');
    const pageSize = this.subject.memory.pageSize;
    if (session.strategy === 'all-dirty') return into.setRange(0, pagesIn(size, pageSize));
    try {
      if (session.strategy === 'device') {
        for (const d of session.logging) await reportDmaLogging(d, into, iova, size, pageSize);
      } else {
        for (const table of session.tables) await this.iommu!.query(table, into, iova, size, false);
      }
    } catch (e) {
      // What was reported before the failure is cleared in the kernel: keep it rather than lose it.
      into.mergeIncoming();
      throw e;
    }
    return into.mergeIncoming();
  }
}
