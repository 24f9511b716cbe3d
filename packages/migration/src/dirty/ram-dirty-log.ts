// Where guest RAM gets dirtied besides device DMA: the vCPUs. A VMM feeds the migration dirty
// log through a provider (KVM's dirty log or dirty ring, a TCG write path, ...); writes through
// GuestMemory.write mark the log themselves and need no provider.

import { token, type GuestMemory } from '@vmmkit/core';

/** A source of guest RAM writes the migration must see. */
export interface RamDirtyLogProvider {
  /** A name for progress events, e.g. 'kvm-dirty-log'. */
  readonly name: string;
  /** Dirty logging starts (the log is empty and every page counts as dirty at first). */
  start(memory: GuestMemory): void | Promise<void>;
  /**
   * Fold the writes since the last sync into the guest memory's dirty log (`memory.markDirty`,
   * `memory.mergeDirty`); return the pages newly marked.
   */
  sync(memory: GuestMemory): number | Promise<number>;
  /** Dirty logging stops (migration ended, either way). */
  stop(memory: GuestMemory): void | Promise<void>;
  /**
   * Optional: resolves once the writers it logs have stopped after the VM paused (vCPUs out of
   * the guest, their last port I/O and MMIO completed). The migration waits for it before it
   * stops the devices, so that no guest access reaches a device whose state is being saved
   * (QEMU pauses all vCPUs before the VM's state change stops the devices).
   */
  quiesce?(): Promise<void>;
}

/** Multi-registration token: the RAM dirty-log providers of a VM. */
export const RamDirtyLogProviders = token<RamDirtyLogProvider>('migration.ram-dirty-log-providers');
