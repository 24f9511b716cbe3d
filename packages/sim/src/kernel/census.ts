// The census of live kernel objects, by kind: what a test checks to prove nothing leaked.

import { InvariantError } from '@vmmkit/core';

/** Kinds of kernel object the simulated host counts. */
export type ObjectKind =
  | 'ioas' | 'hwpt' | 'device_bind' | 'access' | 'selftest' | 'container' | 'group_attach' | 'data_fd'
  | 'dma_logging' | 'irq_eventfd' | 'eventfd' | 'memfd' | 'mapping' | 'iommu_dirty_tracking' | 'device_open'
  | 'process_fd';

/** Counts of live kernel objects by kind. */
export class Census {
  readonly #counts = new Map<ObjectKind, number>();

  add(kind: ObjectKind, n = 1): void {
    this.#counts.set(kind, (this.#counts.get(kind) ?? 0) + n);
  }

  remove(kind: ObjectKind, n = 1): void {
    const left = (this.#counts.get(kind) ?? 0) - n;
    if (left < 0) throw new InvariantError(`sim census: more ${kind} released than created`);
    this.#counts.set(kind, left);
  }

  /** Live objects by kind; kinds with no live object are left out. */
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.#counts].filter(([, n]) => n > 0).sort(([a], [b]) => a.localeCompare(b)));
  }
}
