// The migration dirty log of a whole VM: guest RAM writes (GuestMemory.write and the VMM's RAM
// dirty-log providers) and every VFIO container's tracker, synced into the guest memory's
// per-block dirty log, and handed to the sender a block at a time.

import { DirtyBitmap, FirstError, VfioAddressSpaces, type GuestMemory, type Vmm } from '@vmmkit/core';
import { ContainerDirtyTracker } from './container-tracker.js';
import { RamDirtyLogProviders, type RamDirtyLogProvider } from './ram-dirty-log.js';
import type { DirtyTrackingStrategy } from './strategy.js';

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
  readonly trackers: readonly ContainerDirtyTracker[];
  readonly #memory: GuestMemory;
  readonly #providers: readonly RamDirtyLogProvider[];
  /** A cleared bitmap per block, swapped with the block's log when its pages are taken. */
  #spares: DirtyBitmap[] = [];
  #started = false;
  /** Pages in the log that a sync already reported and no send has taken yet. */
  #reported = 0;

  constructor(vmm: Vmm) {
    this.#memory = vmm.memory;
    const spaces = vmm.container.resolve(VfioAddressSpaces).all();
    this.trackers = spaces.flatMap((s) => s.containers).map((c) => new ContainerDirtyTracker(c, vmm.host, vmm.memory));
    this.#providers = vmm.container.isRegistered(RamDirtyLogProviders, true) ? vmm.container.resolveAll(RamDirtyLogProviders) : [];
  }

  /**
   * Start the dirty log with every page dirty (the first iteration sends all of RAM), then the
   * providers and every container's tracker. On failure whatever started is stopped again.
   */
  async start(): Promise<void> {
    this.#memory.startDirtyLog();
    for (const b of this.#memory.blocks) b.dirty!.fill();
    this.#spares = this.#memory.blocks.map((b) => new DirtyBitmap(b.pages));
    // The initial all-dirty log is the bulk stage, not guest writes.
    this.#reported = this.dirtyPages();
    this.#started = true;
    try {
      for (const p of this.#providers) await p.start(this.#memory);
      for (const t of this.trackers) await t.start();
    } catch (e) {
      await this.stop().catch(() => undefined);
      throw e;
    }
  }

  /** Sync every source into the dirty log. `precopy`: the devices may still be running. */
  async sync(precopy: boolean): Promise<DirtySyncReport> {
    const t0 = performance.now();
    // GuestMemory.write marks the log directly: what is in it beyond what was reported is new.
    const guestWrites = Math.max(0, this.dirtyPages() - this.#reported);
    const providers = [];
    for (const p of this.#providers) providers.push({ name: p.name, pages: await p.sync(this.#memory) });
    const containers = [];
    for (const t of this.trackers) containers.push({ container: t.container.id, strategy: t.strategy, pages: await t.sync(precopy) });
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

  /** Stop every tracker and provider and drop the dirty log; carries on through failures. */
  async stop(): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    const errors = new FirstError();
    for (const t of this.trackers) await errors.runAsync(() => t.stop());
    for (const p of this.#providers) await errors.runAsync(async () => p.stop(this.#memory));
    this.#memory.stopDirtyLog();
    this.#spares = [];
    errors.rethrow();
  }
}
