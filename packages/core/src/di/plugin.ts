// Plugins: plain objects that register what they provide into a VM's DI container.
// Nothing registers itself on import; the composition root decides which plugins a VMM has.

import type { DependencyContainer } from 'tsyringe';

/** A vmmkit plugin: a backend, a device type, migration, a guest IOMMU, or your own. */
export interface VmmPlugin {
  /** Unique name, for messages and to refuse a plugin given twice. */
  readonly name: string;
  /** Register providers into the VM's container (a child of the process's root container). */
  register(container: DependencyContainer): void;
}
