// The GSI routing table of a VM's in-kernel irqchip (QEMU's kvm_irqchip_add_msi_route and
// kvm_irqchip_commit_routes in accel/kvm/kvm-all.c). KVM_CREATE_IRQCHIP installs default routes
// for GSIs 0-23 (PIC and IOAPIC pins); KVM_SET_GSI_ROUTING replaces the whole table, so every
// table committed here starts with those defaults, then the MSI routes, each on a GSI of its own
// from 24 up. This is the one owner of the table: nobody else sets routes on the VM.

import { ArgumentError, type HostKernel, type MsiMessage } from '@vmmkit/core';
import {
  KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
  KVM_SET_GSI_ROUTING, kvm_irq_routing,
} from '@vmmkit/core/uapi';
import { KvmError } from './kvm-errors.js';

/** One entry of the table, as committed. */
export type GsiRoute =
  | { readonly gsi: number; readonly kind: 'irqchip'; readonly irqchip: number; readonly pin: number }
  | { readonly gsi: number; readonly kind: 'msi'; readonly message: MsiMessage };

/** GSIs below this are the irqchip's pins (16 PIC inputs, 24 IOAPIC pins); MSI routes start here. */
export const FIRST_MSI_GSI = 24;

/**
 * The routes KVM_CREATE_IRQCHIP installs on x86 (the kernel's default_routing in
 * arch/x86/kvm/irq_comm.c): GSI n to IOAPIC pin n for n < 24, and for n < 16 also to pin n % 8
 * of the master (n < 8) or slave PIC. QEMU commits its own variant (GSI 0 to IOAPIC pin 2, as
 * its board wires the PIT); vmmkit keeps the kernel's, so committing a table changes nothing
 * for the pins.
 */
export function defaultIrqchipRoutes(): GsiRoute[] {
  const routes: GsiRoute[] = [];
  for (let gsi = 0; gsi < FIRST_MSI_GSI; gsi++) {
    routes.push({ gsi, kind: 'irqchip', irqchip: KVM_IRQCHIP_IOAPIC, pin: gsi });
    if (gsi < 16) routes.push({ gsi, kind: 'irqchip', irqchip: gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, pin: gsi % 8 });
  }
  return routes;
}

/** `routes` as the bytes of struct kvm_irq_routing. */
export function encodeGsiRouting(routes: readonly GsiRoute[]): Uint8Array {
  return kvm_irq_routing.encode({
    nr: routes.length,
    entries: routes.map((r) => r.kind === 'irqchip'
      ? { gsi: r.gsi, type: KVM_IRQ_ROUTING_IRQCHIP, irqchip: { irqchip: r.irqchip, pin: r.pin } }
      : { gsi: r.gsi, type: KVM_IRQ_ROUTING_MSI, msi: { address_lo: Number(r.message.address & 0xffff_ffffn), address_hi: Number(r.message.address >> 32n), data: r.message.data } }),
  });
}

export class KvmIrqRoutes {
  readonly #defaults = defaultIrqchipRoutes();
  /** The MSI routes, by GSI: the kernel's after the last successful commit (but for a failed removal, see `removeMsi`). */
  readonly #msi = new Map<number, MsiMessage>();

  constructor(
    private readonly host: HostKernel,
    private readonly vmFd: number,
    /** The most entries the kernel takes (KVM_CAP_IRQ_ROUTING's answer). */
    private readonly maxRoutes: number,
  ) {}

  /** The table as the next commit would give it: the defaults, then the MSI routes by GSI. */
  get table(): readonly GsiRoute[] {
    const msi = [...this.#msi].sort(([a], [b]) => a - b).map(([gsi, message]): GsiRoute => ({ gsi, kind: 'msi', message }));
    return [...this.#defaults, ...msi];
  }

  /** The GSIs that carry MSI routes now. */
  get msiGsis(): number[] {
    return [...this.#msi.keys()].sort((a, b) => a - b);
  }

  /**
   * Route a new GSI (the lowest free one from 24) to `message` and commit.
   * @throws KvmError naming the GSI (cause: the HostError of KVM_SET_GSI_ROUTING); the GSI stays free.
   */
  addMsi(message: MsiMessage): number {
    if (this.#defaults.length + this.#msi.size >= this.maxRoutes) {
      throw new KvmError('route an MSI', `the routing table is full (${this.maxRoutes} entries)`);
    }
    let gsi = FIRST_MSI_GSI;
    while (this.#msi.has(gsi)) gsi++;
    this.#msi.set(gsi, message);
    try {
      this.#commit(`route GSI ${gsi} to the MSI ${describe(message)}`);
    } catch (e) {
      this.#msi.delete(gsi);
      throw e;
    }
    return gsi;
  }

  /**
   * Route `gsi` to `message` instead and commit.
   * @throws ArgumentError for a GSI without an MSI route; KvmError naming the GSI (the old message stays).
   */
  updateMsi(gsi: number, message: MsiMessage): void {
    const old = this.#route(gsi);
    if (old.address === message.address && old.data === message.data) return;
    this.#msi.set(gsi, message);
    try {
      this.#commit(`route GSI ${gsi} to the MSI ${describe(message)}`);
    } catch (e) {
      this.#msi.set(gsi, old);
      throw e;
    }
  }

  /**
   * Remove `gsi`'s route and commit. When the commit fails the route is forgotten all the same:
   * the kernel keeps it until the next commit, harmlessly once nothing signals that GSI (its
   * irqfd is gone first); every commit replaces the whole table, so the next one (which may
   * hand the GSI out again) brings the kernel back to this table.
   * @throws KvmError naming the GSI.
   */
  removeMsi(gsi: number): void {
    this.#route(gsi);
    this.#msi.delete(gsi);
    this.#commit(`remove the route of GSI ${gsi}`);
  }

  #route(gsi: number): MsiMessage {
    const m = this.#msi.get(gsi);
    if (!m) throw new ArgumentError(`GSI ${gsi} has no MSI route`, 'gsi');
    return m;
  }

  #commit(step: string): void {
    const table = encodeGsiRouting(this.table);
    KvmError.wrap(step, () => this.host.ioctl(this.vmFd, KVM_SET_GSI_ROUTING, table));
  }
}

function describe(m: MsiMessage): string {
  return `0x${m.data.toString(16)} to 0x${m.address.toString(16)}`;
}
