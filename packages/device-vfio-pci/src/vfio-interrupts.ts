// A vfio-pci device's interrupts (QEMU's vfio_intx_enable / vfio_msi_enable / vfio_msix_enable):
// one mode at a time (INTx, MSI or MSI-X), each vector on an eventfd given to the device with
// SET_IRQS through its I/O (the ioctl, or a vfio-user message carrying the fds), and every signal
// reported to the VMM as an interrupt, or, for an MSI or MSI-X vector routed through an
// accelerator's MsiRouter (KVM irqfd), delivered by the kernel without the VMM reading it.

import { FirstFailure, VfioError, type HostKernel, type MsiMessage, type MsiRoute, type MsiRouter, type VfioDevice } from '@vmmkit/core';
import {
  VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
} from '@vmmkit/core/uapi';
import { EventfdSink } from './eventfd-sink.js';

export type InterruptMode = 'intx' | 'msi' | 'msix';

const INDEX: Record<InterruptMode, number> = {
  intx: VFIO_PCI_INTX_IRQ_INDEX,
  msi: VFIO_PCI_MSI_IRQ_INDEX,
  msix: VFIO_PCI_MSIX_IRQ_INDEX,
};

/** Delivered for every interrupt the device signals. */
export type InterruptHandler = (mode: InterruptMode, vector: number, count: bigint) => void;

export class VfioInterrupts {
  #mode: InterruptMode | undefined;
  /** A mode the device may still have on: turning it off failed, so the next disable tries again. */
  #stale: InterruptMode | undefined;
  #sinks: EventfdSink[] = [];
  #router: MsiRouter | undefined;
  /** The vectors routed now, by vector: what was connected and the message it carries. */
  readonly #routes = new Map<number, { readonly route: MsiRoute; message: MsiMessage }>();
  /** Vectors the router refused, with the message refused: not asked again until it changes. */
  readonly #refused = new Map<number, MsiMessage>();

  constructor(
    private readonly host: HostKernel,
    private readonly device: VfioDevice,
    /** IRQ counts per VFIO IRQ index, from VFIO_DEVICE_GET_IRQ_INFO. */
    private readonly counts: readonly number[],
    private readonly deliver: InterruptHandler,
    /** Told of what goes wrong where nobody waits for an answer (reading a signalled eventfd). */
    private readonly warn: (message: string) => void,
  ) {}

  /** The active mode, if any. */
  get mode(): InterruptMode | undefined {
    return this.#mode;
  }

  /** How many vectors the active mode has. */
  get vectors(): number {
    return this.#sinks.length;
  }

  /** The vectors routed through the router now (their eventfds are not read by the VMM). */
  get routedVectors(): number[] {
    return [...this.#routes.keys()].sort((a, b) => a - b);
  }

  /**
   * Use `router` for MSI and MSI-X vectors from now on, or none. The routes made through the
   * previous router are disconnected first (their vectors heard by the VMM again); `route`
   * says which vectors to connect.
   */
  useRouter(router: MsiRouter | undefined): void {
    if (router === this.#router) return;
    for (const v of [...this.#routes.keys()]) this.#disconnect(v, (e) => this.#warnRoute(v, 'disconnect', e), true);
    this.#router = router;
    this.#refused.clear();
  }

  /**
   * Route exactly the vectors of `wanted` (vector to the message the guest programmed) through
   * the router, each update a message that changed, and give every other vector back to the
   * VMM's eventfd reader. Nothing is routed without a router or in INTx mode. Failures are
   * warned, never thrown: a vector the router refuses is delivered by the VMM as before.
   */
  route(wanted: ReadonlyMap<number, MsiMessage>): void {
    const mode = this.#mode;
    const routable = this.#router !== undefined && (mode === 'msi' || mode === 'msix');
    for (let v = 0; v < this.#sinks.length; v++) {
      const want = routable ? wanted.get(v) : undefined;
      const current = this.#routes.get(v);
      if (current && !want) {
        this.#disconnect(v, (e) => this.#warnRoute(v, 'disconnect', e));
      } else if (current && want && !sameMessage(current.message, want)) {
        try {
          current.route.update(want);
          current.message = want;
        } catch (e) {
          this.#warnRoute(v, 'update', e);
          this.#disconnect(v, (e2) => this.#warnRoute(v, 'disconnect', e2));
        }
      } else if (!current && want) {
        const refused = this.#refused.get(v);
        if (refused && sameMessage(refused, want)) continue;
        this.#connect(v, want);
      }
    }
  }

  #connect(vector: number, message: MsiMessage): void {
    const sink = this.#sinks[vector]!;
    // Stop reading first: a signal that comes before the irqfd exists stays counted in the
    // eventfd, and KVM delivers what it finds pending when the irqfd is assigned.
    sink.pause();
    try {
      this.#routes.set(vector, { route: this.#router!.connect(sink.fd, message), message });
      this.#refused.delete(vector);
    } catch (e) {
      this.#refused.set(vector, message);
      sink.listen();
      this.#warnRoute(vector, 'connect', e);
    }
  }

  /**
   * Disconnect `vector`'s route and read its eventfd again. When the router refuses, the route
   * is kept (its eventfd unread) and the next `route` tries again; `force` (the eventfds are
   * about to close, or the router goes) tries once more at once and then lets go of it. Each
   * failure is reported to `onError`.
   */
  #disconnect(vector: number, onError: (e: unknown) => void, force = false): void {
    const routed = this.#routes.get(vector)!;
    try {
      routed.route.disconnect();
    } catch (e) {
      onError(e);
      if (!force) return;
      try {
        routed.route.disconnect();
      } catch (again) {
        onError(again);
      }
    }
    this.#routes.delete(vector);
    try {
      this.#sinks[vector]?.listen();
    } catch (e) {
      onError(e);
    }
  }

  #warnRoute(vector: number, what: 'connect' | 'update' | 'disconnect', e: unknown): void {
    const mode = this.#mode?.toUpperCase() ?? 'MSI';
    const error = new VfioError(`${what} the route of ${mode} vector ${vector}`, this.device.name, { cause: e });
    this.warn(`${error.message}${what === 'disconnect' ? '' : '; the VMM delivers the vector itself'}`);
  }

  /**
   * Switch to `mode` with `vectors` vectors (1 for INTx), each on a new eventfd. Whatever mode was
   * active is disabled first, as vfio-pci allows one at a time. On failure nothing is left enabled.
   */
  async enable(mode: InterruptMode, vectors = 1): Promise<void> {
    const available = this.counts[INDEX[mode]] ?? 0;
    if (vectors < 1 || vectors > available || (mode === 'intx' && vectors !== 1)) {
      throw new VfioError(`enable ${mode.toUpperCase()} with ${vectors} vector(s)`, this.device.name, {
        detail: `the device offers ${available}`,
      });
    }
    await this.disable();
    const sinks: EventfdSink[] = [];
    try {
      for (let v = 0; v < vectors; v++) {
        const onError = (e: unknown): void => this.warn(`failed to read the ${mode.toUpperCase()} vector ${v} eventfd: ${e instanceof Error ? e.message : String(e)}`);
        sinks.push(new EventfdSink(this.host, this.device.name, (n) => this.deliver(mode, v, n), onError));
      }
      await this.#setIrqs(mode, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, vectors, sinks.map((s) => s.fd));
    } catch (e) {
      // The enable's failure is the one to report; every eventfd goes regardless.
      const failures = new FirstFailure();
      for (const s of sinks) failures.run(() => s.close());
      throw e;
    }
    this.#mode = mode;
    this.#sinks = sinks;
  }

  /**
   * Turn the active mode off and close its eventfds (closed even when the device could not be
   * told: nobody listens any more). A mode the device could not be told to drop is tried again
   * by the next disable (and so by the next enable), so that the device and this record agree.
   */
  async disable(): Promise<void> {
    const mode = this.#mode ?? this.#stale;
    if (!mode) return;
    // Routes first: an irqfd must go before its eventfd closes (KVM_IRQFD's deassign names the
    // fd). Like every routing failure, one here is warned, not the disable's: closing the
    // eventfd below ends a KVM irqfd on it all the same.
    for (const v of [...this.#routes.keys()]) this.#disconnect(v, (e) => this.#warnRoute(v, 'disconnect', e), true);
    const failures = new FirstFailure();
    this.#refused.clear();
    this.#mode = undefined;
    const sinks = this.#sinks.splice(0);
    try {
      await this.#setIrqs(mode, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, []);
      this.#stale = undefined;
    } catch (e) {
      this.#stale = mode;
      failures.keep(e);
    }
    for (const s of sinks) failures.run(() => s.close());
    failures.rethrow();
  }

  /**
   * End of interrupt for INTx: the kernel masks INTx when it fires (AUTOMASKED) until user space
   * unmasks it, as QEMU's vfio_intx_eoi does.
   */
  async unmaskIntx(): Promise<void> {
    if (this.#mode !== 'intx') return;
    await this.#setIrqs('intx', VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 1, []);
  }

  async #setIrqs(mode: InterruptMode, flags: number, count: number, fds: readonly number[]): Promise<void> {
    const what = flags & VFIO_IRQ_SET_ACTION_UNMASK ? 'unmask' : count ? `enable ${count} vector(s) of` : 'disable';
    try {
      await this.device.io.setIrqs({ index: INDEX[mode], start: 0, count, flags, eventfds: fds.length ? fds : undefined });
    } catch (e) {
      throw new VfioError(`${what} ${mode.toUpperCase()}`, this.device.name, { cause: e });
    }
  }
}

function sameMessage(a: MsiMessage, b: MsiMessage): boolean {
  return a.address === b.address && a.data === b.data;
}
