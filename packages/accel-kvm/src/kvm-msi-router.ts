// MSIs straight from eventfds (QEMU's vfio_add_kvm_msi_virq: kvm_irqchip_add_msi_route, then
// kvm_irqchip_add_irqfd_notifier_gsi): each connected eventfd gets a GSI routed to its message
// and an irqfd on that GSI, so a device's signal reaches the guest's local APIC without the VMM.
// The router owns its routes (GSI plus irqfd); whoever connected one disconnects it.

import type { MsiMessage, MsiRoute, MsiRouter } from '@vmmkit/core';
import { KvmError } from './kvm-errors.js';
import type { KvmEventfds } from './kvm-eventfds.js';
import type { KvmIrqRoutes } from './kvm-irq-routes.js';

/** A route this router made and has not undone yet. */
export interface KvmMsiRouteInfo {
  readonly eventfd: number;
  readonly gsi: number;
}

export class KvmMsiRouter implements MsiRouter {
  readonly #live = new Map<MsiRoute, KvmMsiRouteInfo>();
  #closed = false;

  constructor(readonly routes: KvmIrqRoutes, private readonly eventfds: KvmEventfds) {}

  /** The routes connected now, in the order they were made. */
  get connected(): readonly KvmMsiRouteInfo[] {
    return [...this.#live.values()];
  }

  /**
   * Route `eventfd` to `message`: a new MSI route, then an irqfd on its GSI.
   * The route's `update` commits the table with the new message (a KvmError naming the GSI
   * leaves the old one routed); its `disconnect` unroutes the irqfd, then removes the GSI's
   * route (a KvmError naming the GSI: KVM_IRQFD refused to let go, and the route stays to try
   * again; or the table without it could not be committed, and the irqfd is gone all the same).
   * @throws KvmError naming the GSI and the step (its cause the HostError with the ioctl); then
   *   nothing of it stays (its GSI's route is removed again, best effort).
   */
  connect(eventfd: number, message: MsiMessage): MsiRoute {
    if (this.#closed) throw new KvmError(`route eventfd ${eventfd} to an MSI`, 'the VM is closing');
    const gsi = this.routes.addMsi(message);
    let unroute: () => void;
    try {
      unroute = this.eventfds.addIrqfd(eventfd, gsi);
    } catch (e) {
      try {
        this.routes.removeMsi(gsi);
      } catch {
        // The irqfd's failure is the one to report; the GSI's route, with no irqfd on it, goes
        // with the next commit.
      }
      throw e;
    }
    const route: MsiRoute = {
      update: (next) => {
        if (!this.#live.has(route)) throw new KvmError(`update the MSI route of GSI ${gsi}`, 'the route is disconnected');
        this.routes.updateMsi(gsi, next);
      },
      disconnect: () => {
        if (!this.#live.has(route)) return;
        // The irqfd first: once it is gone nothing signals the GSI. When KVM refuses, the route
        // stays connected (both parts) so that the caller may try again; the VM's close ends it.
        unroute();
        this.#live.delete(route);
        this.routes.removeMsi(gsi);
      },
    };
    this.#live.set(route, { eventfd, gsi });
    return route;
  }

  /**
   * The VM is closing: its fd's close releases every irqfd and route, so routes disconnected
   * after this do nothing, and nothing connects any more.
   */
  close(): void {
    this.#closed = true;
    this.#live.clear();
  }
}
