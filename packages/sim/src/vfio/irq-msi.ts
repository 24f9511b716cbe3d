// The MSI / MSI-X trigger handler of VFIO_DEVICE_SET_IRQS (vfio_pci_set_msi_trigger) and the
// single-eventfd error and request interrupts (vfio_pci_set_ctx_trigger_single).

import {
  VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_ERR_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import type { VfioPciCore } from './device-core.js';
import type { IrqRequest } from './irq-set.js';

const s32 = (data: Uint8Array, i: number): number => new DataView(data.buffer, data.byteOffset).getInt32(4 * i, true);

/** Enable, change, disable or loop back MSI or MSI-X vectors. */
export function setMsi(core: VfioPciCore, req: IrqRequest): number {
  const irqs = core.irqs;
  const enabled = irqs.irqType === req.index;
  if (enabled && req.count === 0 && req.flags & VFIO_IRQ_SET_DATA_NONE) {
    irqs.msiDisable();
    return 0;
  }
  if (!(enabled || irqs.irqType === VFIO_PCI_NUM_IRQS)) fail('EINVAL', `another interrupt type (index ${irqs.irqType}) is enabled`);
  if (req.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    if (!enabled) irqs.msiEnable(req.index, req.start + req.count);
    try {
      setBlock(core, req);
    } catch (e) {
      if (!enabled) irqs.msiDisable();
      throw e;
    }
    return 0;
  }
  if (!enabled) fail('EINVAL', `index ${req.index} is not enabled`);
  for (let i = 0; i < req.count; i++) {
    if (req.flags & VFIO_IRQ_SET_DATA_NONE || req.data[i]) irqs.vectors.get(req.start + i)?.signal();
  }
  return 0;
}

/** vfio_msi_set_block: on a failure, every vector of the block up to the failing one is left without an eventfd. */
function setBlock(core: VfioPciCore, req: IrqRequest): void {
  const irqs = core.irqs;
  let i = 0;
  try {
    for (; i < req.count; i++) irqs.msiSetVector(req.start + i, s32(req.data, i));
  } catch (e) {
    for (let j = 0; j < i; j++) irqs.msiSetVector(req.start + j, -1);
    throw e;
  }
}

/** The error (PCIe only) and request interrupts: one eventfd each, with loopback. */
export function setSingle(core: VfioPciCore, req: IrqRequest): number {
  const irqs = core.irqs;
  const slot = irqs.single(req.index);
  if (req.start !== 0 || req.count > 1) fail('EINVAL', 'error and request IRQs have a single vector');
  const current = irqs[slot];
  if (req.flags & VFIO_IRQ_SET_DATA_NONE) {
    if (!current) return fail('EINVAL', `no ${req.index === VFIO_PCI_ERR_IRQ_INDEX ? 'error' : 'request'} eventfd is set`);
    if (req.count) current.signal();
    else {
      current.put();
      irqs[slot] = undefined;
    }
    return 0;
  }
  if (req.count === 0) fail('EINVAL', 'count 0 only disables, with DATA_NONE');
  if (req.flags & VFIO_IRQ_SET_DATA_BOOL) {
    if (req.data[0]) current?.signal();
    return 0;
  }
  if (req.flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    const fd = s32(req.data, 0);
    if (fd === -1) {
      current?.put();
      irqs[slot] = undefined;
    } else if (fd >= 0) {
      const next = irqs.eventfd(fd);
      current?.put();
      irqs[slot] = next;
    }
  }
  return 0;
}
