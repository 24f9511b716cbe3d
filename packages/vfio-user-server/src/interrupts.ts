// The device's interrupts as a vfio-user client configures them with SET_IRQS: INTx with
// automask and unmask, MSI and MSI-X vectors, the error and request interrupts, each signalled
// on the eventfd the client sent (vfio_pci_intrs.c's rules, as far as a client can see them).

import { HostError, type HostKernel } from '@vmmkit/core';
import {
  PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE,
  PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, VFIO_IRQ_INFO_AUTOMASKED, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE,
  VFIO_IRQ_INFO_NORESIZE, VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_NUM_IRQS,
  VFIO_PCI_REQ_IRQ_INDEX, findCapability,
} from '@vmmkit/core/uapi';
import type { VfioUserIrqInfo, VfioUserSetIrqs } from '@vmmkit/core/vfio-user';
import type { SimIrq, SimPciModel } from '@vmmkit/sim';
import { refuse } from './request-error.js';

const ONE = new Uint8Array(new BigUint64Array([1n]).buffer);
const NONE = -1;

/** Interrupt configuration of one connection. It owns every eventfd it holds and closes them. */
export class DeviceInterrupts {
  /** The enabled index (INTx, MSI or MSI-X), or none. */
  #type = NONE;
  readonly #vectors = new Map<number, number>();
  #intx = { trigger: NONE, masked: false, asserted: false };
  readonly #single = new Map<number, number>();
  /** Signals that could not be delivered (a full or closed eventfd). */
  dropped = 0;

  constructor(private readonly host: HostKernel, private readonly model: SimPciModel) {}

  /** DEVICE_GET_IRQ_INFO for `index`. */
  info(index: number): VfioUserIrqInfo {
    const i = this.model.interrupts;
    switch (index) {
      case VFIO_PCI_INTX_IRQ_INDEX:
        return { index, flags: VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED, count: i.intx ? 1 : 0 };
      case VFIO_PCI_MSI_IRQ_INDEX: return { index, flags: VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, count: i.msi };
      case VFIO_PCI_MSIX_IRQ_INDEX: return { index, flags: VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, count: i.msix };
      case VFIO_PCI_ERR_IRQ_INDEX: return { index, flags: VFIO_IRQ_INFO_EVENTFD, count: 1 };
      case VFIO_PCI_REQ_IRQ_INDEX: return { index, flags: VFIO_IRQ_INFO_EVENTFD, count: 1 };
      default: return refuse('EINVAL', `IRQ index ${index} is not one of the ${VFIO_PCI_NUM_IRQS} PCI indexes`);
    }
  }

  /**
   * DEVICE_SET_IRQS. Takes `fds` (the eventfds that came with the message): on success the ones
   * kept are owned here and the rest closed; on failure all are closed.
   */
  set(req: VfioUserSetIrqs, fds: readonly number[]): void {
    const kept = new Set<number>();
    try {
      this.#set(req, fds, kept);
    } finally {
      for (const fd of fds) if (!kept.has(fd)) this.#close(fd);
    }
  }

  #set(req: VfioUserSetIrqs, fds: readonly number[], kept: Set<number>): void {
    const { count } = this.info(req.index);
    const disableAll = req.count === 0 && req.flags & VFIO_IRQ_SET_DATA_NONE;
    if (!disableAll && req.start + req.count > count) refuse('EINVAL', `vectors ${req.start}..${req.start + req.count - 1} exceed the ${count} of index ${req.index}`);
    const action = req.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    const fire = (i: number): boolean => (req.flags & VFIO_IRQ_SET_DATA_BOOL ? req.bools![i] !== 0 : true);
    switch (req.index) {
      case VFIO_PCI_INTX_IRQ_INDEX: return this.#setIntx(req, action, fds, kept, fire);
      case VFIO_PCI_MSI_IRQ_INDEX:
      case VFIO_PCI_MSIX_IRQ_INDEX: return this.#setMsi(req, action, fds, kept, fire);
      default: {
        if (action !== VFIO_IRQ_SET_ACTION_TRIGGER) refuse('EINVAL', 'error and request interrupts only trigger');
        if (req.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
          this.#replaceSingle(req.index, fds[0]);
          if (fds[0] !== undefined) kept.add(fds[0]);
        } else if (disableAll) this.#replaceSingle(req.index, undefined);
        else if (req.count && fire(0)) this.#signal(this.#single.get(req.index));
      }
    }
  }

  #setIntx(req: VfioUserSetIrqs, action: number, fds: readonly number[], kept: Set<number>, fire: (i: number) => boolean): void {
    const isIntx = this.#type === VFIO_PCI_INTX_IRQ_INDEX;
    if (action !== VFIO_IRQ_SET_ACTION_TRIGGER) {
      if (!isIntx) refuse('EINVAL', 'INTx masking needs INTx enabled');
      if (req.flags & VFIO_IRQ_SET_DATA_EVENTFD) refuse('ENOTTY', 'INTx mask and unmask eventfds are not offered');
      if (req.count !== 1 || !fire(0)) return;
      if (action === VFIO_IRQ_SET_ACTION_MASK) this.#intx.masked = true;
      else if (action === VFIO_IRQ_SET_ACTION_UNMASK) this.#unmaskIntx();
      return;
    }
    if (req.count === 0 && req.flags & VFIO_IRQ_SET_DATA_NONE) {
      if (isIntx) this.#disable();
      return;
    }
    if (req.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      if (this.#type !== NONE && !isIntx) refuse('EINVAL', 'another interrupt type is enabled');
      if (fds.length === 0) return this.#disable();
      if (isIntx) this.#close(this.#intx.trigger);
      this.#type = VFIO_PCI_INTX_IRQ_INDEX;
      this.#intx = { trigger: fds[0]!, masked: false, asserted: this.#intx.asserted };
      kept.add(fds[0]!);
      return;
    }
    if (!isIntx) refuse('EINVAL', 'INTx is not enabled');
    if (fire(0)) this.#signal(this.#intx.trigger);
  }

  #setMsi(req: VfioUserSetIrqs, action: number, fds: readonly number[], kept: Set<number>, fire: (i: number) => boolean): void {
    if (action !== VFIO_IRQ_SET_ACTION_TRIGGER) refuse('EINVAL', 'MSI and MSI-X vectors are not maskable through SET_IRQS');
    const enabled = this.#type === req.index;
    if (req.count === 0 && req.flags & VFIO_IRQ_SET_DATA_NONE) {
      if (enabled) this.#disable();
      return;
    }
    if (!enabled && this.#type !== NONE) refuse('EINVAL', `another interrupt type (index ${this.#type}) is enabled`);
    if (req.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
      if (!enabled) this.#enableMsi(req.index);
      for (let i = 0; i < req.count; i++) {
        const v = req.start + i;
        this.#close(this.#vectors.get(v) ?? NONE);
        this.#vectors.delete(v);
        const fd = fds[i];
        if (fd !== undefined) {
          this.#vectors.set(v, fd);
          kept.add(fd);
        }
      }
      return;
    }
    if (!enabled) refuse('EINVAL', `index ${req.index} is not enabled`);
    for (let i = 0; i < req.count; i++) if (fire(i)) this.#signal(this.#vectors.get(req.start + i));
  }

  /** The model raised an interrupt: deliver it on the eventfd of the enabled type, if any. */
  raise(irq: SimIrq): void {
    if (irq.kind === 'intx') {
      this.#intx.asserted = true;
      const config = this.model.config;
      const disabled = (config[PCI_COMMAND + 1]! & (PCI_COMMAND_INTX_DISABLE >> 8)) !== 0;
      if (this.#type !== VFIO_PCI_INTX_IRQ_INDEX || this.#intx.masked || disabled) return;
      // INTx is automasked: the client unmasks it once the guest has serviced it.
      this.#intx.masked = true;
      this.#signal(this.#intx.trigger);
      return;
    }
    const index = irq.kind === 'msi' ? VFIO_PCI_MSI_IRQ_INDEX : VFIO_PCI_MSIX_IRQ_INDEX;
    if (this.#type === index) this.#signal(this.#vectors.get(irq.vector));
  }

  lowerIntx(): void {
    this.#intx.asserted = false;
  }

  /** Close every eventfd and leave interrupts disabled (the client went away). */
  dispose(): void {
    this.#disable();
    for (const index of [...this.#single.keys()]) this.#replaceSingle(index, undefined);
  }

  #unmaskIntx(): void {
    this.#intx.masked = false;
    if (this.#intx.asserted) this.raise({ kind: 'intx' });
  }

  /** vfio-pci sets the capability's enable bit when it enables MSI or MSI-X; models read it. */
  #enableMsi(index: number): void {
    this.#type = index;
    this.#setEnableBit(index, true);
  }

  #disable(): void {
    if (this.#type === VFIO_PCI_MSI_IRQ_INDEX || this.#type === VFIO_PCI_MSIX_IRQ_INDEX) this.#setEnableBit(this.#type, false);
    for (const fd of this.#vectors.values()) this.#close(fd);
    this.#vectors.clear();
    this.#close(this.#intx.trigger);
    this.#intx = { trigger: NONE, masked: false, asserted: this.#intx.asserted };
    this.#type = NONE;
  }

  #setEnableBit(index: number, on: boolean): void {
    const config = this.model.config;
    const msi = index === VFIO_PCI_MSI_IRQ_INDEX;
    const at = findCapability(config, msi ? PCI_CAP_ID_MSI : PCI_CAP_ID_MSIX);
    if (!at) return;
    const reg = at + (msi ? PCI_MSI_FLAGS : PCI_MSIX_FLAGS);
    const dv = new DataView(config.buffer, config.byteOffset);
    const bit = msi ? PCI_MSI_FLAGS_ENABLE : PCI_MSIX_FLAGS_ENABLE;
    dv.setUint16(reg, on ? dv.getUint16(reg, true) | bit : dv.getUint16(reg, true) & ~bit, true);
  }

  #replaceSingle(index: number, fd: number | undefined): void {
    this.#close(this.#single.get(index) ?? NONE);
    if (fd === undefined) this.#single.delete(index);
    else this.#single.set(index, fd);
  }

  #signal(fd: number | undefined): void {
    if (fd === undefined || fd === NONE) return;
    try {
      this.host.write(fd, ONE);
    } catch (e) {
      // A full counter or a dead fd loses this signal, as eventfd_signal would saturate.
      if (!(e instanceof HostError)) throw e;
      this.dropped++;
    }
  }

  #close(fd: number): void {
    if (fd === NONE) return;
    try {
      this.host.close(fd);
    } catch (e) {
      // close releases the fd even when it reports an error.
      if (!(e instanceof HostError)) throw e;
    }
  }
}
