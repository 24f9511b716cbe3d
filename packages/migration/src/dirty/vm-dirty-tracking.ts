// The migration dirty log of a whole VM: guest RAM writes (GuestMemory.write and the VMM's RAM
// dirty-log providers) and every VFIO container's dirty tracking (which the container owns:
// migration only starts, syncs and stops it), synced into the guest memory's per-block dirty
// log, and handed to the sender a block at a time. It remembers what it started and stops
// exactly that; what fails to stop stays on record for the next stop.

import {
  DirtyBitmap, FirstFailure, type DirtyTrackingStrategy, type GuestMemory, type VfioContainerBase, type Vmm,
} from '@vmmkit/core';
import { RamDirtyLogProviders, type RamDirtyLogProvider } from './ram-dirty-log.js';

/** What one sync found, and where. */
export interface DirtySyncReport {
  /** Pages found dirty in total (each counted once, by the first source that marked it). */
  readonly pages: number;
  /** Pages the guest wrote through GuestMemory.write since the last sync or send. */
  readonly guestWrites: number;
  readonly providers: readonly { readonly name: string; readonly pages: number }[];
  readonly containers: readonly { readonly container: string; readonly strategy: DirtyTrackingStrategy; readonly pages: number }[];
  /** Pages dirty in the log after the sync: what the next pass sends. */
  readonly dirtyPages: number;
  readonly durationMs: number;
}

export class VmDirtyTracking {
  readonly #memory: GuestMemory;
  readonly #containers: readonly VfioContainerBase[];
  readonly #providers: readonly RamDirtyLogProvider[];
  /** What start turned on and stop has not yet turned off. */
  readonly #startedContainers: VfioContainerBase[] = [];
  readonly #startedProviders: RamDirtyLogProvider[] = [];
  /** A cleared bitmap per block, swapped with the block's log when its pages are taken. */
  #spares: DirtyBitmap[] = [];
  /** Pages in the log that a sync already reported and no send has taken yet. */
  #reported = 0;

  constructor(vmm: Vmm) {
    this.#memory = vmm.memory;
    this.#containers = vmm.vfio.containers;
    this.#providers = vmm.container.isRegistered(RamDirtyLogProviders, true) ? vmm.container.resolveAll(RamDirtyLogProviders) : [];
  }

  /** The VFIO containers whose dirty pages this log collects. */
  get containers(): readonly VfioContainerBase[] {
    return this.#containers;
  }

  /**
   * Start the dirty log with every page dirty (the first iteration sends all of RAM), then the
   * providers and every container's tracking. On failure whatever started is stopped again.
   */
  async start(): Promise<void> {
    this.#memory.startDirtyLog();
    for (const b of this.#memory.blocks) b.dirty!.fill();
    this.#spares = this.#memory.blocks.map((b) => new DirtyBitmap(b.pages));
    // The initial all-dirty log is the bulk stage, not guest writes.
    this.#reported = this.dirtyPages();
    try {
      for (const p of this.#providers) {
        await p.start(this.#memory);
        this.#startedProviders.push(p);
      }
      for (const c of this.#containers) {
        await c.dirtyTracking.start();
        this.#startedContainers.push(c);
      }
    } catch (e) {
      await this.stop().catch(() => undefined);
      throw e;
    }
  }

  /** After the VM paused: resolves once every provider's writers (vCPUs) have stopped. */
  async quiesce(): Promise<void> {
    for (const p of this.#providers) await p.quiesce?.();
  }

  /** Sync every source into the dirty log. `precopy`: the devices may still be running. */
  async sync(precopy: boolean): Promise<DirtySyncReport> {
    const t0 = performance.now();
    // GuestMemory.write marks the log directly: what is in it beyond what was reported is new.
    const guestWrites = Math.max(0, this.dirtyPages() - this.#reported);
    const providers = [];
    for (const p of this.#providers) providers.push({ name: p.name, pages: await p.sync(this.#memory) });
    const containers = [];
    for (const c of this.#containers) {
      containers.push({ container: c.id, strategy: c.dirtyTracking.strategy, pages: await c.dirtyTracking.sync(precopy) });
    }
    const pages = guestWrites + providers.reduce((n, p) => n + p.pages, 0) + containers.reduce((n, c) => n + c.pages, 0);
    const dirtyPages = this.dirtyPages();
    this.#reported = dirtyPages;
    return { pages, guestWrites, providers, containers, dirtyPages, durationMs: performance.now() - t0 };
  }

  /** Pages dirty now, across RAM. */
  dirtyPages(): number {
    return this.#memory.blocks.reduce((n, b) => n + (b.dirty?.count() ?? 0), 0);
  }

  /**
   * Take block `index`'s dirty pages to send: the block gets a clear log (writes from now on are
   * caught for the next iteration) and the returned bitmap is valid until the next take.
   */
  take(index: number): DirtyBitmap {
    const block = this.#memory.blocks[index]!;
    const taken = block.dirty!;
    this.#reported = Math.max(0, this.#reported - taken.count());
    const spare = this.#spares[index]!;
    spare.clear();
    block.dirty = spare;
    this.#spares[index] = taken;
    return taken;
  }

  /**
   * Stop exactly what start turned on, carrying on through failures: what stopped is forgotten,
   * what failed stays on record and the next stop tries it again. The dirty log itself ends.
   * @throws the first failure.
   */
  async stop(): Promise<void> {
    const failures = new FirstFailure();
    for (const c of [...this.#startedContainers]) {
      await failures.runAsync(async () => {
        await c.dirtyTracking.stop();
        this.#startedContainers.splice(this.#startedContainers.indexOf(c), 1);
      });
    }
    for (const p of [...this.#startedProviders]) {
      await failures.runAsync(async () => {
        await p.stop(this.#memory);
        this.#startedProviders.splice(this.#startedProviders.indexOf(p), 1);
      });
    }
    if (this.#memory.logging) this.#memory.stopDirtyLog();
    this.#spares = [];
    failures.rethrow();
  }
}
