// QEMU's RunState as query-status reports it, followed from the VMM's events: the VMM knows
// whether its guest runs; why it does not (a stop, waiting for a migration, after one) is what
// management stacks read from the status.

import type { Vmm } from '@vmmkit/core';
import '@vmmkit/migration';

/** The RunState values vmmkit's VMs go through (qapi/run-state.json). */
export type RunStatus = 'running' | 'paused' | 'inmigrate' | 'finish-migrate' | 'postmigrate' | 'shutdown';

export class RunStateTracker {
  #status: RunStatus;
  readonly #off: (() => void)[] = [];

  /** @param incoming the VM was created waiting for an incoming migration (QEMU's -incoming). */
  constructor(private readonly vmm: Vmm, incoming: boolean) {
    this.#status = vmm.running ? 'running' : incoming ? 'inmigrate' : 'paused';
    const on = <E extends 'vm:run-state' | 'migration:switchover' | 'migration:completed' | 'migration:failed'>(event: E, listener: () => void): void => {
      vmm.events.on(event, listener);
      this.#off.push(() => vmm.events.off(event, listener));
    };
    on('vm:run-state', () => {
      // Waiting for a migration is not an ordinary pause: it stays inmigrate until the guest runs.
      if (vmm.running) this.#status = 'running';
      else if (this.#status !== 'inmigrate') this.#status = 'paused';
    });
    on('migration:switchover', () => void (this.#status = 'finish-migrate'));
    on('migration:completed', () => void (this.#status = 'postmigrate'));
    on('migration:failed', () => {
      if (this.#status === 'finish-migrate') this.#status = vmm.running ? 'running' : 'paused';
    });
  }

  get status(): RunStatus {
    return this.#status;
  }

  /** The VMM is going away (quit). */
  shutdown(): void {
    this.#status = 'shutdown';
  }

  dispose(): void {
    for (const off of this.#off.splice(0)) off();
  }
}
