// The INTx handlers of VFIO_DEVICE_SET_IRQS (vfio_pci_set_intx_mask/unmask/trigger): masking,
// unmasking (also by eventfd), enabling with a trigger eventfd, disabling, and loopback triggers.

import {
  VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_NUM_IRQS,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import type { VfioPciCore } from './device-core.js';
import type { IrqRequest } from './irq-set.js';

const s32 = (data: Uint8Array, i = 0): number => new DataView(data.buffer, data.byteOffset).getInt32(4 * i, true);

/** One of the INTx actions. */
export function setIntx(core: VfioPciCore, action: number, req: IrqRequest): number {
  if (action === VFIO_IRQ_SET_ACTION_MASK || action === VFIO_IRQ_SET_ACTION_UNMASK) return maskOrUnmask(core, action, req);
  return trigger(core, req);
}

function maskOrUnmask(core: VfioPciCore, action: number, req: IrqRequest): number {
  const irqs = core.irqs;
  if (irqs.irqType !== VFIO_PCI_INTX_IRQ_INDEX || req.start !== 0 || req.count !== 1) {
    fail('EINVAL', 'INTx masking needs INTx enabled, start 0 and count 1');
  }
  const apply = action === VFIO_IRQ_SET_ACTION_MASK ? () => irqs.intxMask() : () => irqs.intxUnmask();
  if (req.flags & VFIO_IRQ_SET_DATA_NONE) apply();
  else if (req.flags & VFIO_IRQ_SET_DATA_BOOL) {
    if (req.data[0]) apply();
  } else if (req.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    if (action === VFIO_IRQ_SET_ACTION_MASK) fail('ENOTTY', 'masking INTx by eventfd is not implemented by vfio-pci');
    const fd = s32(req.data);
    irqs.intxSetUnmask(fd >= 0 ? irqs.eventfd(fd) : undefined);
  }
  return 0;
}

function trigger(core: VfioPciCore, req: IrqRequest): number {
  const irqs = core.irqs;
  const isIntx = irqs.irqType === VFIO_PCI_INTX_IRQ_INDEX;
  if (isIntx && req.count === 0 && req.flags & VFIO_IRQ_SET_DATA_NONE) {
    irqs.intxDisable();
    return 0;
  }
  if (!(isIntx || irqs.irqType === VFIO_PCI_NUM_IRQS) || req.start !== 0 || req.count !== 1) {
    fail('EINVAL', 'INTx can only be enabled alone, with start 0 and count 1');
  }
  if (req.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    const fd = s32(req.data);
    const eventfd = fd >= 0 ? irqs.eventfd(fd) : undefined;
    if (isIntx) irqs.intxSetTrigger(eventfd);
    else irqs.intxEnable(eventfd);
    return 0;
  }
  if (!isIntx) fail('EINVAL', 'INTx is not enabled');
  if (req.flags & VFIO_IRQ_SET_DATA_NONE || req.data[0]) irqs.intxSend();
  return 0;
}
