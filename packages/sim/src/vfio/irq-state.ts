// vfio-pci's interrupt state for one device: INTx with automask and unmask eventfds, MSI and
// MSI-X vectors, the error and request eventfds, and delivery of what the model raises to the
// eventfds the user configured (drivers/vfio/pci/vfio_pci_intrs.c).

import {
  VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS, PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX, PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE, PCI_MSI_FLAGS_QSIZE,
  PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, findCapability,
} from '@vmmkit/core/uapi';
import type { SimIrq } from '../devices/pci-model.js';
import type { Census } from '../kernel/census.js';
import { EventFdFile } from '../kernel/eventfd-file.js';
import { fail } from '../kernel/sim-errno.js';
import type { FdTable } from '../kernel/fd-table.js';
import type { SimDevice } from '../kernel/sim-device.js';

/** An eventfd context the kernel holds (eventfd_ctx_fdget): a reference on the eventfd, counted in the census. */
export class IrqEventFd {
  constructor(
    readonly file: EventFdFile,
    private readonly census: Census,
  ) {
    file.ref();
    census.add('irq_eventfd');
  }

  signal(): void {
    this.file.signal(1n);
  }

  put(): void {
    this.census.remove('irq_eventfd');
    this.file.unref();
  }
}

/** The interrupt configuration of an open device. `irqType` is the enabled index, VFIO_PCI_NUM_IRQS for none. */
export class VfioPciIrqs {
  irqType = VFIO_PCI_NUM_IRQS;
  /** INTx: the trigger eventfd, whether it is masked, and the optional unmask eventfd. */
  intx: { trigger: IrqEventFd | undefined; masked: boolean; unmask: IrqEventFd | undefined } | undefined;
  /** The user's INTx disable bit in the command register. */
  virqDisabled = false;
  /** MSI / MSI-X vectors with an eventfd, and how many vectors are allocated. */
  readonly vectors = new Map<number, IrqEventFd>();
  allocated = 0;
  errTrigger: IrqEventFd | undefined;
  reqTrigger: IrqEventFd | undefined;
  /** The level of the device's INTx line. */
  #intxAsserted = false;
  #unmasking = false;
  readonly #unmaskListener = (): void => this.#unmaskFired();

  constructor(
    private readonly device: SimDevice,
    private readonly fds: FdTable,
    private readonly census: Census,
  ) {}

  /** eventfd_ctx_fdget: EBADF for a closed fd, EINVAL for an fd that is not an eventfd. */
  eventfd(fd: number): IrqEventFd {
    const file = this.fds.get(fd);
    if (!(file instanceof EventFdFile)) fail('EINVAL', `fd ${fd} is not an eventfd`);
    return new IrqEventFd(file, this.census);
  }

  /** Route the model's interrupts here (while the device is open). */
  connect(): void {
    // The device was just enabled (and reset): its line starts deasserted.
    this.#intxAsserted = false;
    this.device.irqSink = (irq) => this.#raised(irq);
    this.device.intxLowerSink = () => {
      this.#intxAsserted = false;
    };
  }

  // ---- INTx ---------------------------------------------------------------------------------

  intxEnable(trigger: IrqEventFd | undefined): void {
    this.intx = { trigger, masked: this.virqDisabled, unmask: undefined };
    this.irqType = VFIO_PCI_INTX_IRQ_INDEX;
    // A line already asserted fires as soon as the handler is installed.
    if (this.#intxAsserted) this.#intxFired();
  }

  intxSetTrigger(trigger: IrqEventFd | undefined): void {
    this.intx!.trigger?.put();
    this.intx!.trigger = trigger;
  }

  intxDisable(): void {
    this.intxSetUnmask(undefined);
    this.intx?.trigger?.put();
    this.intx = undefined;
    this.irqType = VFIO_PCI_NUM_IRQS;
  }

  /** vfio_send_intx_eventfd: signal the trigger unless the user disabled INTx. */
  intxSend(): void {
    if (this.irqType === VFIO_PCI_INTX_IRQ_INDEX && !this.virqDisabled) this.intx!.trigger?.signal();
  }

  intxMask(): void {
    if (this.intx) this.intx.masked = true;
  }

  /** Unmask; an interrupt still pending on the line is sent again at once and stays masked. */
  intxUnmask(): void {
    const intx = this.intx;
    if (!intx || !intx.masked || this.virqDisabled) return;
    intx.masked = this.#intxAsserted;
    if (intx.masked) this.intxSend();
  }

  /** Set (or with undefined, clear) the eventfd whose signal unmasks INTx (an irqfd resampler). */
  intxSetUnmask(unmask: IrqEventFd | undefined): void {
    const intx = this.intx;
    if (!intx) {
      unmask?.put();
      return;
    }
    if (intx.unmask) {
      intx.unmask.file.readableListeners.delete(this.#unmaskListener);
      intx.unmask.put();
    }
    intx.unmask = unmask;
    if (!unmask) return;
    unmask.file.readableListeners.add(this.#unmaskListener);
    if (unmask.file.count > 0n) this.#unmaskFired();
  }

  setVirqDisabled(disabled: boolean): void {
    this.virqDisabled = disabled;
    if (disabled) this.intxMask();
    else this.intxUnmask();
  }

  // ---- MSI / MSI-X ------------------------------------------------------------------------------

  msiEnable(index: number, nvec: number): void {
    this.irqType = index;
    this.allocated = nvec;
    this.#setMsiEnableBit(index, nvec, true);
  }

  /**
   * vfio_msi_set_vector_signal: drop the vector's eventfd, then (fd >= 0) take the new one. A
   * vector past those allocated is EINVAL for MSI; MSI-X allocates it (dynamic MSI-X).
   */
  msiSetVector(vector: number, fd: number): void {
    this.vectors.get(vector)?.put();
    this.vectors.delete(vector);
    if (fd < 0) return;
    if (vector >= this.allocated) {
      if (this.irqType !== VFIO_PCI_MSIX_IRQ_INDEX) fail('EINVAL', `MSI vector ${vector} is not allocated (${this.allocated} enabled)`);
      this.allocated = vector + 1; // stays allocated until MSI-X is disabled, as in the kernel
    }
    this.vectors.set(vector, this.eventfd(fd));
  }

  msiDisable(): void {
    for (const v of this.vectors.values()) v.put();
    this.vectors.clear();
    this.#setMsiEnableBit(this.irqType, 0, false);
    this.allocated = 0;
    this.irqType = VFIO_PCI_NUM_IRQS;
  }

  /** Disable whatever is enabled and drop the error and request eventfds: the device was closed. */
  release(): void {
    if (this.irqType === VFIO_PCI_INTX_IRQ_INDEX) this.intxDisable();
    else if (this.irqType !== VFIO_PCI_NUM_IRQS) this.msiDisable();
    this.errTrigger?.put();
    this.reqTrigger?.put();
    this.errTrigger = this.reqTrigger = undefined;
    this.virqDisabled = false;
    this.device.irqSink = undefined;
    this.device.intxLowerSink = undefined;
  }

  /** The error or request eventfd slot of an index. */
  single(index: number): 'errTrigger' | 'reqTrigger' {
    return index === VFIO_PCI_ERR_IRQ_INDEX ? 'errTrigger' : 'reqTrigger';
  }

  #raised(irq: SimIrq): void {
    if (irq.kind === 'intx') {
      this.#intxAsserted = true;
      if (this.irqType === VFIO_PCI_INTX_IRQ_INDEX) this.#intxFired();
      return;
    }
    const index = irq.kind === 'msi' ? VFIO_PCI_MSI_IRQ_INDEX : VFIO_PCI_MSIX_IRQ_INDEX;
    if (this.irqType === index) this.vectors.get(irq.vector)?.signal();
  }

  /** vfio_intx_handler: an unmasked interrupt is masked and sent to the user. */
  #intxFired(): void {
    if (this.intx!.masked) return;
    this.intx!.masked = true;
    this.intxSend();
  }

  #unmaskFired(): void {
    const file = this.intx?.unmask?.file;
    // The guard stops a loop when the same eventfd is both trigger and unmask.
    if (!file || file.count === 0n || this.#unmasking) return;
    this.#unmasking = true;
    try {
      file.read(new Uint8Array(8)); // the kernel consumes the count (eventfd_ctx_do_read)
      this.intxUnmask();
    } finally {
      this.#unmasking = false;
    }
  }

  /** What pci_alloc_irq_vectors / pci_free_irq_vectors do to the device's capability. */
  #setMsiEnableBit(index: number, nvec: number, enable: boolean): void {
    const config = this.device.model.config;
    const dv = new DataView(config.buffer, config.byteOffset);
    const msix = index === VFIO_PCI_MSIX_IRQ_INDEX;
    const at = findCapability(config, msix ? PCI_CAP_ID_MSIX : PCI_CAP_ID_MSI);
    if (!at) return;
    const reg = at + (msix ? PCI_MSIX_FLAGS : PCI_MSI_FLAGS);
    let flags = dv.getUint16(reg, true);
    if (msix) flags = enable ? flags | PCI_MSIX_FLAGS_ENABLE : flags & ~PCI_MSIX_FLAGS_ENABLE;
    else {
      flags &= ~(PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE);
      if (enable) flags |= PCI_MSI_FLAGS_ENABLE | (Math.ceil(Math.log2(Math.max(nvec, 1))) << 4);
    }
    dv.setUint16(reg, flags, true);
  }
}
